import CCrypto

/// The 96-bit STUN transaction ID held inline: `high` is wire bytes 0..<4,
/// `low` is wire bytes 4..<12 (both as big-endian numbers).
///
/// Split this way so the IPv6 XOR key (magic cookie followed by the
/// transaction ID) is exactly `(cookie << 32 | high, low)`.
public struct TransactionID: Hashable, Sendable {
    public var high: UInt32
    public var low: UInt64

    @inlinable
    public init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads 12 bytes at `pointer` (network order). The caller guarantees 12 readable bytes.
    @inlinable
    public init(loadingFrom pointer: UnsafeRawPointer) {
        high = UInt32(bigEndian: pointer.loadUnaligned(as: UInt32.self))
        low = UInt64(bigEndian: pointer.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
    }

    /// Writes the 12 bytes at `pointer`. The caller guarantees 12 writable bytes.
    @inlinable
    public func store(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: high.bigEndian, as: UInt32.self)
        (pointer + 4).storeBytes(of: low.bigEndian, as: UInt64.self)
    }

    /// A transaction ID from the system's cryptographic random source, as
    /// RFC 8489 §6 asks for requests and indications.
    public static func random() -> TransactionID {
        var bytes: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &bytes) { raw in
            // Failure of the CSPRNG leaves zeros; that only harms uniqueness, not safety.
            _ = uturn_random_bytes(raw.baseAddress!, 12)
        }
        return withUnsafeBytes(of: &bytes) { TransactionID(loadingFrom: $0.baseAddress!) }
    }
}
