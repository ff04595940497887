extension CredentialStore {
    /// Adds users read from a credential database (uturnd's credential
    /// thread builds a new store this way and hands it to the workers like
    /// a SIGHUP reload). A static `--user` of the same name wins, so a
    /// database can never take over an operator's configured account.
    ///
    /// - Parameters:
    ///   - keys: name → precomputed key (coturn's `hmackey`).
    ///   - passwords: name → plain password (coturn's Redis `/password`).
    public mutating func addDatabaseUsers(keys: [String: LongTermKey], passwords: [String: String]) {
        for (name, key) in keys where users[name] == nil {
            users[name] = key.algorithm == .md5 ? UserKeys(md5: key) : UserKeys(sha256: key)
            userHashes[CredentialStore.userHash(username: name, realm: realm)] = name
        }
        for (name, password) in passwords where users[name] == nil {
            users[name] = UserKeys(
                md5: LongTermKey.derive(username: name, realm: realm, password: password, algorithm: .md5),
                sha256: LongTermKey.derive(username: name, realm: realm, password: password, algorithm: .sha256))
            userHashes[CredentialStore.userHash(username: name, realm: realm)] = name
        }
    }

    /// Whether `name` authenticates by name (a static or database user).
    public func hasUser(_ name: String) -> Bool { users[name] != nil }

    /// Removes a user (a database user that was deleted or changed).
    public mutating func removeUser(_ name: String) {
        guard users.removeValue(forKey: name) != nil else { return }
        userHashes.removeValue(forKey: CredentialStore.userHash(username: name, realm: realm))
    }
}
