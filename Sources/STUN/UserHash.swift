import CCrypto

/// USERHASH (RFC 8489 §14.4): SHA-256(username ":" realm), 32 bytes inline.
/// As with `IntegrityKey`, OpaqueString preparation is the caller's job.
public struct UserHash: Hashable, Sendable {
    @usableFromInline var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    /// Hashes raw username and realm bytes.
    public init(username: UnsafeRawBufferPointer, realm: UnsafeRawBufferPointer) {
        var colon = UInt8(ascii: ":")
        withUnsafeMutableBytes(of: &storage) { out in
            Swift.withUnsafeBytes(of: &colon) { c in
                uturn_sha256(
                    username.baseAddress, username.count, c.baseAddress, 1, realm.baseAddress, realm.count,
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// Hashes the UTF-8 bytes of `username` and `realm`.
    public init(username: String, realm: String) {
        let u = Array(username.utf8)
        let r = Array(realm.utf8)
        self = u.withUnsafeBytes { u in r.withUnsafeBytes { r in UserHash(username: u, realm: r) } }
    }

    /// Wraps 32 bytes received in USERHASH; nil for any other length.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 32 else { return nil }
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: bytes) }
    }

    /// Calls `body` with the 32 bytes.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var copy = storage
        return Swift.withUnsafeBytes(of: &copy, body)
    }

    public static func == (a: UserHash, b: UserHash) -> Bool {
        a.storage.0 == b.storage.0 && a.storage.1 == b.storage.1 && a.storage.2 == b.storage.2
            && a.storage.3 == b.storage.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.0)
        hasher.combine(storage.1)
        hasher.combine(storage.2)
        hasher.combine(storage.3)
    }
}
