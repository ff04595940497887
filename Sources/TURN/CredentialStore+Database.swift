extension CredentialStore {
    /// Adds users read from a credential database (uturnd's credential
    /// thread builds a new store this way and hands it to the workers like
    /// a SIGHUP reload). A static `--user` of the same name wins, so a
    /// database can never take over an operator's configured account.
    ///
    /// - Parameters:
    ///   - keys: name → precomputed key (coturn's `hmackey`).
    ///   - passwords: name → plain password (coturn's Redis `/password`).
    ///
    /// Names and plain passwords are prepared with OpaqueString like static
    /// users' (printable ASCII unchanged), so a request's prepared USERNAME
    /// finds them.
    public mutating func addDatabaseUsers(keys: [String: LongTermKey], passwords: [String: String]) {
        let preparedRealm = CredentialStore.prepared(realm)
        for (rawName, key) in keys {
            let name = CredentialStore.prepared(rawName)
            guard users[name] == nil else { continue }
            users[name] = key.algorithm == .md5 ? UserKeys(md5: key) : UserKeys(sha256: key)
            userHashes[CredentialStore.userHash(username: name, realm: preparedRealm)] = name
        }
        for (rawName, rawPassword) in passwords {
            let name = CredentialStore.prepared(rawName)
            guard users[name] == nil else { continue }
            let password = CredentialStore.prepared(rawPassword)
            users[name] = UserKeys(
                md5: LongTermKey.derive(username: name, realm: preparedRealm, password: password, algorithm: .md5),
                sha256: LongTermKey.derive(username: name, realm: preparedRealm, password: password, algorithm: .sha256))
            userHashes[CredentialStore.userHash(username: name, realm: preparedRealm)] = name
        }
    }

    /// Whether `name` authenticates by name (a static or database user).
    public func hasUser(_ name: String) -> Bool { users[CredentialStore.prepared(name)] != nil }

    /// Removes a user (a database user that was deleted or changed).
    public mutating func removeUser(_ name: String) {
        let name = CredentialStore.prepared(name)
        guard users.removeValue(forKey: name) != nil else { return }
        userHashes.removeValue(forKey: CredentialStore.userHash(username: name, realm: CredentialStore.prepared(realm)))
    }
}
