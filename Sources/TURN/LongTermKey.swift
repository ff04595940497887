import CCrypto

/// The password algorithms of RFC 8489 §18.5 (PASSWORD-ALGORITHM values).
public enum PasswordAlgorithm: UInt16, Sendable {
    case md5 = 0x0001
    case sha256 = 0x0002

    /// Key length in bytes, which is also the length the algorithm's hash gives.
    @inlinable
    public var keyLength: Int { self == .md5 ? 16 : 32 }
}

/// A long-term credential key (RFC 8489 §9.2.2), held inline: 16 bytes for
/// MD5, 32 for SHA-256. No heap, so a lookup on the request path costs no
/// allocation and a precomputed key can sit in an immutable config.
///
/// `key = H(username ":" realm ":" password)` with H = MD5 or SHA-256.
/// OpaqueString (RFC 8265) preparation of realm and password is not applied:
/// configured and client strings are used as their UTF-8 bytes, which is what
/// coturn and the common clients do for ASCII credentials.
public struct LongTermKey: Hashable, Sendable {
    public var algorithm: PasswordAlgorithm
    /// 32 bytes of storage; only the first `algorithm.keyLength` are used
    /// (the rest stay zero, so synthesized equality and hashing are right).
    @usableFromInline var words: Words = Words()

    @usableFromInline
    struct Words: Hashable, Sendable {
        var w0: UInt64 = 0
        var w1: UInt64 = 0
        var w2: UInt64 = 0
        var w3: UInt64 = 0
    }

    /// A key from its raw bytes (16 for MD5, 32 for SHA-256), e.g. coturn's
    /// precomputed `0x…` keys. Returns nil for a wrong length.
    public init?(algorithm: PasswordAlgorithm, bytes: some Collection<UInt8>) {
        guard bytes.count == algorithm.keyLength else { return nil }
        self.algorithm = algorithm
        withMutableStorage { dst in
            for (i, b) in bytes.enumerated() { dst[i] = b }
        }
    }

    /// Parses coturn's hex form (`0x` followed by 32 or 64 hex digits).
    public init?(hex text: String) {
        var digits = Substring(text)
        if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
        let algorithm: PasswordAlgorithm
        switch digits.count {
        case 32: algorithm = .md5
        case 64: algorithm = .sha256
        default: return nil
        }
        var bytes: [UInt8] = []
        var it = digits.makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = hi.hexDigitValue, let l = lo.hexDigitValue else { return nil }
            bytes.append(UInt8(h << 4 | l))
        }
        self.init(algorithm: algorithm, bytes: bytes)
    }

    init(algorithm: PasswordAlgorithm) {
        self.algorithm = algorithm
    }

    /// Derives `H(username:realm:password)` from raw bytes.
    public static func derive(
        username: UnsafeRawBufferPointer, realm: UnsafeRawBufferPointer, password: UnsafeRawBufferPointer,
        algorithm: PasswordAlgorithm
    ) -> LongTermKey {
        // The C hashes take three ranges; the two colons force one copy, done
        // on the stack (credentials are bounded by STUN's 763/513-byte limits).
        let total = username.count + realm.count + password.count + 2
        var key = LongTermKey(algorithm: algorithm)
        withUnsafeTemporaryAllocation(byteCount: total, alignment: 1) { buf in
            var o = 0
            func put(_ src: UnsafeRawBufferPointer) {
                if src.count > 0 { UnsafeMutableRawBufferPointer(rebasing: buf[o..<(o + src.count)]).copyMemory(from: src) }
                o += src.count
            }
            put(username)
            buf[o] = UInt8(ascii: ":")
            o += 1
            put(realm)
            buf[o] = UInt8(ascii: ":")
            o += 1
            put(password)
            key.withMutableStorage { out in
                let dst = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
                switch algorithm {
                case .md5: uturn_md5(buf.baseAddress, total, nil, 0, nil, 0, dst)
                case .sha256: uturn_sha256(buf.baseAddress, total, nil, 0, nil, 0, dst)
                }
            }
        }
        return key
    }

    /// Derives the key from strings (config side).
    public static func derive(username: String, realm: String, password: String, algorithm: PasswordAlgorithm)
        -> LongTermKey
    {
        var u = username
        var r = realm
        var p = password
        return u.withUTF8 { ub in
            r.withUTF8 { rb in
                p.withUTF8 { pb in
                    derive(
                        username: UnsafeRawBufferPointer(ub), realm: UnsafeRawBufferPointer(rb),
                        password: UnsafeRawBufferPointer(pb), algorithm: algorithm)
                }
            }
        }
    }

    /// The key bytes (16 or 32), for HMAC.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<algorithm.keyLength])) }
    }

    @usableFromInline
    mutating func withMutableStorage<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let n = algorithm.keyLength
        return try Swift.withUnsafeMutableBytes(of: &words) { try body(UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
    }

    /// Constant-time equality of the key bytes.
    public func constantTimeEquals(_ other: LongTermKey) -> Bool {
        guard algorithm == other.algorithm else { return false }
        return withUnsafeBytes { a in other.withUnsafeBytes { b in uturn_ct_equal(a.baseAddress, b.baseAddress, a.count) == 1 } }
    }
}
