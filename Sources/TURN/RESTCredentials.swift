import CCrypto

/// The TURN REST API ("use-auth-secret") credential scheme: an application
/// server and the TURN server share a secret; the username is
/// `expiry[:user]` (expiry in Unix seconds) and the password is
/// `base64(HMAC-SHA1(secret, username))`. No per-user state on the TURN side.
///
/// Several secrets may be configured so they can be rotated: a username is
/// accepted if its password matches any of them.
public struct RESTCredentials: Sendable {
    /// Shared secrets, in the order they are tried.
    public var secrets: [[UInt8]]
    /// Separator between the expiry and the user (coturn's `--rest-api-separator`).
    public var separator: UInt8

    public init(secrets: [String], separator: UInt8 = UInt8(ascii: ":")) {
        self.secrets = secrets.map { Array($0.utf8) }
        self.separator = separator
    }

    /// The expiry encoded in a REST username, or nil when it is not one.
    public func expiry(of username: UnsafeRawBufferPointer) -> Int64? {
        var value: Int64 = 0
        var digits = 0
        for b in username {
            if b == separator { break }
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9"), digits < 18 else { return nil }
            value = value * 10 + Int64(b - UInt8(ascii: "0"))
            digits += 1
        }
        return digits == 0 ? nil : value
    }

    /// The name quotas count against: the part after the separator, or the
    /// whole username when there is none (all anonymous REST users share it).
    public func quotaUser(of username: String) -> String {
        guard let i = username.utf8.firstIndex(of: separator) else { return username }
        return String(username[username.index(after: i)...])
    }

    /// Writes the 28-byte password for `username` under `secret` into `dst`.
    static func password(
        secret: UnsafeRawBufferPointer, username: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer
    ) -> Int {
        var mac = (UInt64(0), UInt64(0), UInt32(0))
        return withUnsafeMutableBytes(of: &mac) { m in
            uturn_hmac_sha1(
                secret.baseAddress, secret.count, username.baseAddress, username.count, nil, 0, nil, 0,
                m.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return Base64.encode(UnsafeRawBufferPointer(rebasing: m[0..<20]), into: dst)
        }
    }

    /// The password an application server hands out (for tools and tests).
    public static func password(secret: String, username: String) -> String {
        var out = [UInt8](repeating: 0, count: 28)
        let s = Array(secret.utf8)
        let u = Array(username.utf8)
        let n = s.withUnsafeBytes { sb in
            u.withUnsafeBytes { ub in out.withUnsafeMutableBytes { password(secret: sb, username: ub, into: $0) } }
        }
        return String(decoding: out[0..<n], as: UTF8.self)
    }

    /// Calls `accept` with the key for each configured secret until it returns true.
    func firstAcceptedKey(
        username: UnsafeRawBufferPointer, realm: UnsafeRawBufferPointer, algorithm: PasswordAlgorithm,
        _ accept: (LongTermKey) -> Bool
    ) -> LongTermKey? {
        var pw = (UInt64(0), UInt64(0), UInt64(0), UInt32(0))  // 28 bytes
        return withUnsafeMutableBytes(of: &pw) { pwBuf in
            for secret in secrets {
                let n = secret.withUnsafeBytes { RESTCredentials.password(secret: $0, username: username, into: pwBuf) }
                let key = LongTermKey.derive(
                    username: username, realm: realm, password: UnsafeRawBufferPointer(rebasing: pwBuf[0..<n]),
                    algorithm: algorithm)
                if accept(key) { return key }
            }
            return nil
        }
    }
}
