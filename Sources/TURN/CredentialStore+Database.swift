import STUN

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

extension TURNServer {
    /// The USERNAME of a signed request the credential store does not know
    /// and the REST API would not take either, or nil: such a request can
    /// wait for uturnd's on-miss database lookup instead of being refused.
    /// Indications and responses are not parsed (the class is in the
    /// first two bytes), so the data path (Send indications) costs nothing here.
    public func usernameToLookUp(_ packet: UnsafeRawBufferPointer) -> String? {
        // The class bits C1 (0x0100) and C0 (0x0010) of the message type are both 0 for a request.
        guard packet.count >= 20, packet[0] & 0x01 == 0, packet[1] & 0x10 == 0,
            let request = try? STUNMessage(parsing: packet), request.messageClass == .request,
            request.messageIntegrity != nil || request.messageIntegritySHA256 != nil,
            request.nonceBytes != nil, request.realmBytes != nil, let name = request.username,
            !configuration.credentials.hasUser(name)
        else { return nil }
        // A REST API name (expiry:user) is checked against the secrets, never looked up.
        if let rest = configuration.credentials.rest, let bytes = request.usernameBytes, rest.expiry(of: bytes) != nil {
            return nil
        }
        return name
    }
}
