import CCrypto

/// The key of MESSAGE-INTEGRITY / MESSAGE-INTEGRITY-SHA256, held inline (no
/// heap) so it can live in per-session state and be passed by value.
///
/// - Short-term credentials: the key is the password itself (RFC 8489 §9.1.1).
/// - Long-term credentials: MD5(username ":" realm ":" password), or SHA-256 of
///   the same when PASSWORD-ALGORITHM is SHA-256 (RFC 8489 §9.2.2).
///
/// Strings are hashed as given: OpaqueString / SASLprep preparation (RFC 8265)
/// is the caller's job; for ASCII credentials it is the identity.
public struct IntegrityKey: Sendable {
    /// The longest key held: HMAC's block size. Longer short-term passwords
    /// would be pre-hashed differently by SHA-1 and SHA-256, so they are refused.
    public static let capacity = 64

    @usableFromInline var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0)
    /// Key length in bytes.
    public let count: Int

    /// A key from raw bytes (at most `capacity`).
    public init(bytes: UnsafeRawBufferPointer) throws(STUNError) {
        guard bytes.count <= Self.capacity else { throw .keyTooLong }
        count = bytes.count
        withUnsafeMutableBytes(of: &storage) { dst in
            if let src = bytes.baseAddress, bytes.count > 0 {
                dst.baseAddress!.copyMemory(from: src, byteCount: bytes.count)
            }
        }
    }

    /// A short-term key: the password's UTF-8 bytes.
    public init(shortTermPassword password: String) throws(STUNError) {
        var password = password
        let result: Result<IntegrityKey, STUNError> = password.withUTF8 { utf8 in
            do throws(STUNError) {
                return .success(try IntegrityKey(bytes: UnsafeRawBufferPointer(utf8)))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }

    /// A long-term key from raw credential bytes. `algorithm` is MD5 (RFC 5389 and
    /// RFC 8489 default) or SHA-256; other values throw `.invalidArgument`.
    public static func longTerm(
        username: UnsafeRawBufferPointer, realm: UnsafeRawBufferPointer, password: UnsafeRawBufferPointer,
        algorithm: PasswordAlgorithmID = .md5
    ) throws(STUNError) -> IntegrityKey {
        guard algorithm == .md5 || algorithm == .sha256 else { throw .invalidArgument }
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let total = username.count + realm.count + password.count + 2
        // The hash functions take three ranges and the input has five (two
        // colons), so join them once in scratch memory. Control path only.
        withUnsafeTemporaryAllocation(byteCount: total, alignment: 1) { joined in
            var p = 0
            for part in [username, UnsafeRawBufferPointer?.none, realm, nil, password] {
                if let part {
                    if part.count > 0 { (joined.baseAddress! + p).copyMemory(from: part.baseAddress!, byteCount: part.count) }
                    p += part.count
                } else {
                    joined[p] = UInt8(ascii: ":")
                    p += 1
                }
            }
            withUnsafeMutableBytes(of: &digest) { out in
                let dst = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
                if algorithm == .md5 {
                    uturn_md5(joined.baseAddress, total, nil, 0, nil, 0, dst)
                } else {
                    uturn_sha256(joined.baseAddress, total, nil, 0, nil, 0, dst)
                }
            }
        }
        return try Swift.withUnsafeBytes(of: &digest) { raw throws(STUNError) in
            try IntegrityKey(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<(algorithm == .md5 ? 16 : 32)]))
        }
    }

    /// A long-term key from strings (their UTF-8 bytes, as given).
    public static func longTerm(
        username: String, realm: String, password: String, algorithm: PasswordAlgorithmID = .md5
    ) throws(STUNError) -> IntegrityKey {
        let u = Array(username.utf8)
        let r = Array(realm.utf8)
        let p = Array(password.utf8)
        let result: Result<IntegrityKey, STUNError> = u.withUnsafeBytes { u in
            r.withUnsafeBytes { r in
                p.withUnsafeBytes { p in
                    do throws(STUNError) {
                        return .success(try longTerm(username: u, realm: r, password: p, algorithm: algorithm))
                    } catch {
                        return .failure(error)
                    }
                }
            }
        }
        return try result.get()
    }

    /// Calls `body` with the key bytes.
    @inlinable
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        var copy = storage
        return try Swift.withUnsafeBytes(of: &copy) { raw throws(E) in
            try body(UnsafeRawBufferPointer(rebasing: raw[0..<count]))
        }
    }
}

extension IntegrityKey: Equatable {
    public static func == (a: IntegrityKey, b: IntegrityKey) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in uturn_ct_equal(x.baseAddress!, y.baseAddress!, x.count) == 1 }
        }
    }
}
