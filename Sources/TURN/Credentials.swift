import CCrypto

/// Outcome of checking a request's credentials.
public enum AuthOutcome: Sendable, Equatable {
    /// The key that verified the message integrity.
    case accepted(LongTermKey)
    /// No such user (401).
    case unknownUser
    /// A REST API username whose expiry has passed (401).
    case expired
    /// The user exists but no key verified the integrity (401).
    case badIntegrity
}

/// The long-term credentials a server accepts: a realm, static users
/// (`--user name:password` or precomputed keys), and optionally the TURN
/// REST API shared secrets. Immutable once built; shared by all workers.
///
/// Static users' keys are derived once here, so checking a static user costs
/// one dictionary lookup and one HMAC. REST users cost one HMAC-SHA1 and one
/// hash per configured secret.
public struct CredentialStore: Sendable {
    public let realm: String
    let realmBytes: [UInt8]
    var users: [String: UserKeys]
    /// SHA-256(username ":" realm) → username, for USERHASH (RFC 8489 §14.4).
    var userHashes: [LongTermKey: String]
    public var rest: RESTCredentials?

    struct UserKeys: Sendable {
        var md5: LongTermKey?
        var sha256: LongTermKey?
    }

    /// - Parameters:
    ///   - users: name → password.
    ///   - keys: name → precomputed key (coturn's `0x…` form); a user may have
    ///     an MD5 and a SHA-256 key. A precomputed MD5 key cannot serve the
    ///     SHA-256 algorithm, so such users must use MD5.
    ///
    /// Names, passwords and the realm go into keys prepared with OpaqueString
    /// (RFC 8489 §9.2.2; `OpaqueString`); printable ASCII is unchanged. A
    /// string the profile refuses is used as it is (`Settings` refuses such
    /// configuration before it gets here).
    public init(realm: String, users: [String: String] = [:], keys: [String: [LongTermKey]] = [:], rest: RESTCredentials? = nil) {
        self.realm = realm
        let preparedRealm = CredentialStore.prepared(realm)
        self.realmBytes = Array(preparedRealm.utf8)
        self.rest = rest
        var table: [String: UserKeys] = [:]
        for (rawName, rawPassword) in users {
            let name = CredentialStore.prepared(rawName)
            let password = CredentialStore.prepared(rawPassword)
            table[name] = UserKeys(
                md5: LongTermKey.derive(username: name, realm: preparedRealm, password: password, algorithm: .md5),
                sha256: LongTermKey.derive(username: name, realm: preparedRealm, password: password, algorithm: .sha256))
        }
        for (rawName, list) in keys {
            let name = CredentialStore.prepared(rawName)
            var entry = table[name] ?? UserKeys()
            for key in list {
                if key.algorithm == .md5 { entry.md5 = key } else { entry.sha256 = key }
            }
            table[name] = entry
        }
        self.users = table
        var hashes: [LongTermKey: String] = [:]
        for name in table.keys { hashes[CredentialStore.userHash(username: name, realm: preparedRealm)] = name }
        self.userHashes = hashes
    }

    /// USERHASH value: SHA-256(username ":" realm), as a 32-byte key value.
    public static func userHash(username: String, realm: String) -> LongTermKey {
        var key = LongTermKey(algorithm: .sha256)
        let text = Array("\(username):\(realm)".utf8)
        key.withMutableStorage { out in
            text.withUnsafeBytes {
                uturn_sha256($0.baseAddress, $0.count, nil, 0, nil, 0, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return key
    }

    /// The username behind a USERHASH attribute value, if it names a static user.
    /// REST API users cannot be found by hash (their names are not stored).
    public func username(forUserHash hash: UnsafeRawBufferPointer) -> String? {
        guard let key = LongTermKey(algorithm: .sha256, bytes: hash) else { return nil }
        return userHashes[key]
    }

    /// Finds the key for `username` that `verify` accepts (`verify` checks the
    /// message integrity with it). `unixTime` is wall-clock seconds, for REST expiry.
    public func authenticate(
        username: UnsafeRawBufferPointer, algorithm: PasswordAlgorithm, unixTime: Int64,
        verify: (LongTermKey) -> Bool
    ) -> AuthOutcome {
        // One String per control request: the dictionary needs it. Small names stay inline.
        let name = CredentialStore.prepared(String(decoding: username, as: UTF8.self))
        if let entry = users[name] {
            guard let key = algorithm == .md5 ? entry.md5 : entry.sha256 else { return .badIntegrity }
            return verify(key) ? .accepted(key) : .badIntegrity
        }
        guard let rest, let expiry = rest.expiry(of: username) else { return .unknownUser }
        if expiry < unixTime { return .expired }
        let key = realmBytes.withUnsafeBytes { realm in
            rest.firstAcceptedKey(username: username, realm: realm, algorithm: algorithm, verify)
        }
        return key.map { .accepted($0) } ?? .badIntegrity
    }

    /// The name quotas count against (the REST user part, or the name itself).
    public func quotaUser(of username: String) -> String {
        let name = CredentialStore.prepared(username)
        if users[name] == nil, let rest { return rest.quotaUser(of: username) }
        return name
    }

    /// OpaqueString of `text`, or `text` itself when the profile refuses it
    /// (such a name matches no configured user; such a password no request).
    static func prepared(_ text: String) -> String { (try? OpaqueString.prepare(text)) ?? text }
}
