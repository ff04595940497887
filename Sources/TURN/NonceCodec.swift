import CCrypto
import Glibc
import STUN

/// RFC 8489 §9.2 security features a server announces in its nonce cookie.
/// Bits are numbered from the least significant end of the 24-bit set, which
/// is how the RFC's own test vector ("obMatJos2AAAC…") reads.
public struct SecurityFeatures: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue & 0xFF_FFFF }
    /// PASSWORD-ALGORITHMS negotiation (SHA-256 offered).
    public static let passwordAlgorithms = SecurityFeatures(rawValue: 1 << 0)
    /// USERHASH accepted.
    public static let usernameAnonymity = SecurityFeatures(rawValue: 1 << 1)
}

/// What a presented nonce turned out to be.
public enum NonceCheck: Sendable, Equatable {
    /// Ours, for this client, not expired; carries the features it announced.
    case valid(SecurityFeatures)
    /// Ours but older than the nonce lifetime, or not ours at all: 438.
    case stale
}

/// Stateless nonces: any worker holding the same secret can check a nonce
/// another worker issued, and nothing is stored per client.
///
/// Layout (all printable, no padding):
///
///     ["obMatJos2" base64(features, 3 bytes)]   only when features ≠ 0
///     base64( issuedAt: UInt32 BE seconds | HMAC-SHA256(secret, issuedAt | features | client)[0..<14] )
///
/// The HMAC binds the nonce to the client's IP address (not its port) and
/// to the features announced, so a nonce cannot be replayed from elsewhere,
/// and a
/// man in the middle cannot strip the cookie to bid the client down to MD5
/// (the MAC would no longer match).
///
/// `issuedAt` is monotonic seconds; all workers of one process share the
/// same monotonic clock, so the nonce is portable between them. With a
/// fleet secret (`--nonce-secret-file`) several servers share the key and
/// `issuedAt` is wall-clock seconds instead (monotonic clocks differ from
/// host to host), so a nonce one server issued is good at the others: a
/// client redirected by 300 ALTERNATE-SERVER keeps the nonce it has
/// (Chromium does) and is not refused with 438 there. Clocks of a fleet may
/// differ by up to `fleetSkew` seconds.
public struct NonceCodec: Sendable {
    /// 32 bytes of key, inline.
    var secret: LongTermKey
    /// Seconds a nonce stays valid (coturn `--stale-nonce`, default 600).
    public var lifetime: UInt32
    /// The secret is shared by a fleet and `issuedAt` is wall-clock time.
    public private(set) var fleet = false
    /// How far ahead of this server's clock another fleet member's may be.
    static let fleetSkew: Int64 = 60

    static let cookie: StaticString = "obMatJos2"
    static let macLength = 14
    /// Longest nonce this codec writes.
    public static let maxLength = 9 + 4 + 24

    /// A codec with a fresh random secret.
    public init(lifetime: UInt32 = 600) {
        var raw = [UInt8](repeating: 0, count: 32)
        let ok = raw.withUnsafeMutableBytes { uturn_random_bytes($0.baseAddress, 32) }
        precondition(ok == 1, "no random bytes for the nonce secret")
        self.init(secret: raw, lifetime: lifetime)
    }

    /// A codec with a given 32-byte secret (tests; several processes sharing nonces).
    public init(secret: [UInt8], lifetime: UInt32 = 600) {
        precondition(secret.count == 32, "nonce secret is 32 bytes")
        self.secret = LongTermKey(algorithm: .sha256, bytes: secret)!
        self.lifetime = lifetime
    }

    /// A codec for a fleet of servers sharing `material` (the contents of
    /// `--nonce-secret-file`, at least 16 bytes): the key is its SHA-256
    /// under a label of its own, so the file can hold any text.
    public init?(fleetSecret material: [UInt8], lifetime: UInt32 = 600) {
        guard material.count >= 16 else { return nil }
        let label: StaticString = "uturn nonce fleet secret"
        var key = [UInt8](repeating: 0, count: 32)
        material.withUnsafeBytes { m in
            uturn_sha256(label.utf8Start, label.utf8CodeUnitCount, m.baseAddress, m.count, nil, 0, &key)
        }
        self.init(secret: key, lifetime: lifetime)
        fleet = true
    }

    /// Seconds `issuedAt` counts in: monotonic, or wall-clock for a fleet.
    func seconds(_ now: MonotonicTime) -> UInt32 {
        fleet ? UInt32(truncatingIfNeeded: time(nil)) : now.seconds
    }

    /// Writes a fresh nonce for `client` into `dst`; returns its length (0 if `dst` is too small).
    public func encode(
        into dst: UnsafeMutableRawBufferPointer, client: TransportAddress, features: SecurityFeatures,
        now: MonotonicTime
    ) -> Int {
        encode(into: dst, client: client, features: features, issuedAt: seconds(now))
    }

    /// As `encode(into:client:features:now:)` with the issue time given (tests).
    func encode(
        into dst: UnsafeMutableRawBufferPointer, client: TransportAddress, features: SecurityFeatures,
        issuedAt: UInt32
    ) -> Int {
        guard dst.count >= NonceCodec.maxLength else { return 0 }
        var o = 0
        if features.rawValue != 0 {
            let c = NonceCodec.cookie
            for i in 0..<c.utf8CodeUnitCount { dst[i] = c.utf8Start[i] }
            o = c.utf8CodeUnitCount
            var f = (UInt8(truncatingIfNeeded: features.rawValue >> 16), UInt8(truncatingIfNeeded: features.rawValue >> 8),
                UInt8(truncatingIfNeeded: features.rawValue))
            o += withUnsafeBytes(of: &f) { Base64.encode($0, into: UnsafeMutableRawBufferPointer(rebasing: dst[o...])) }
        }
        var body = (UInt64(0), UInt64(0), UInt16(0))  // 18 bytes: 4 time + 14 mac
        withUnsafeMutableBytes(of: &body) { b in
            b.storeBytes(of: issuedAt.bigEndian, toByteOffset: 0, as: UInt32.self)
            mac(issuedAt: issuedAt, features: features, client: client, into: UnsafeMutableRawBufferPointer(rebasing: b[4..<18]))
            o += Base64.encode(UnsafeRawBufferPointer(rebasing: b[0..<18]), into: UnsafeMutableRawBufferPointer(rebasing: dst[o...]))
        }
        return o
    }

    /// Checks a nonce presented by `client`.
    public func check(_ nonce: UnsafeRawBufferPointer, client: TransportAddress, now: MonotonicTime) -> NonceCheck {
        check(nonce, client: client, nowSeconds: seconds(now))
    }

    /// As `check(_:client:now:)` with the present time given (tests).
    func check(_ nonce: UnsafeRawBufferPointer, client: TransportAddress, nowSeconds nowS: UInt32) -> NonceCheck {
        var rest = nonce
        var features = SecurityFeatures()
        let c = NonceCodec.cookie
        if rest.count == 9 + 4 + 24 {
            for i in 0..<c.utf8CodeUnitCount where rest[i] != c.utf8Start[i] { return .stale }
            var f = (UInt32(0))
            let ok = withUnsafeMutableBytes(of: &f) { fb in
                Base64.decodeUnpadded(UnsafeRawBufferPointer(rebasing: rest[9..<13]), into: UnsafeMutableRawBufferPointer(rebasing: fb[1..<4])) != nil
            }
            guard ok else { return .stale }
            features = SecurityFeatures(rawValue: UInt32(bigEndian: f))
            rest = UnsafeRawBufferPointer(rebasing: rest[13...])
        }
        guard rest.count == 24 else { return .stale }
        var body = (UInt64(0), UInt64(0), UInt16(0))
        var expected = (UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &body) { b -> NonceCheck in
            guard Base64.decodeUnpadded(rest, into: b) == 18 else { return .stale }
            let issued = UInt32(bigEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            return withUnsafeMutableBytes(of: &expected) { e -> NonceCheck in
                let want = UnsafeMutableRawBufferPointer(rebasing: e[0..<NonceCodec.macLength])
                mac(issuedAt: issued, features: features, client: client, into: want)
                guard uturn_ct_equal(want.baseAddress, b.baseAddress! + 4, NonceCodec.macLength) == 1 else { return .stale }
                // A nonce from the future (clock confusion) is as stale as an
                // old one; in a fleet, another member's clock may be a little ahead.
                let age = Int64(nowS) - Int64(issued)
                guard age >= (fleet ? -Self.fleetSkew : 0), age < Int64(lifetime) else { return .stale }
                return .valid(features)
            }
        }
    }

    private func mac(issuedAt: UInt32, features: SecurityFeatures, client: TransportAddress, into out: UnsafeMutableRawBufferPointer) {
        // issuedAt(4) features(4) family(1) zero(2) address(16). The port is
        // left out: an RFC 6062 client sends ConnectionBind on a new TCP
        // connection (a new port) with the nonce its control connection got,
        // and clients do not retry it after a 438 (coturn's turnutils_uclient).
        var input = (UInt64(0), UInt64(0), UInt64(0), UInt32(0), UInt8(0), UInt8(0), UInt8(0))
        var full = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &input) { m in
            m.storeBytes(of: issuedAt.bigEndian, toByteOffset: 0, as: UInt32.self)
            m.storeBytes(of: features.rawValue.bigEndian, toByteOffset: 4, as: UInt32.self)
            m[8] = client.ip.family.rawValue
            client.ip.store(to: m.baseAddress! + 11)
            secret.withUnsafeBytes { key in
                withUnsafeMutableBytes(of: &full) { f in
                    uturn_hmac_sha256(
                        key.baseAddress, key.count, m.baseAddress, 27, nil, 0, nil, 0,
                        f.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    out.copyMemory(from: UnsafeRawBufferPointer(rebasing: f[0..<out.count]))
                }
            }
        }
    }
}
