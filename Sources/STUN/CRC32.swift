/// CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, initial and final XOR
/// 0xFFFFFFFF), as FINGERPRINT uses (RFC 8489 §14.7). Table-driven, one byte
/// per step: messages that carry FINGERPRINT are control traffic.
public struct CRC32: Sendable {
    @usableFromInline static let table = InlineArray<256, UInt32> { index in
        var c = UInt32(index)
        for _ in 0..<8 {
            c = c & 1 == 1 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1
        }
        return c
    }

    @usableFromInline var state: UInt32 = 0xFFFF_FFFF

    @inlinable
    public init() {}

    /// Feeds more bytes.
    @inlinable
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var c = state
        for byte in bytes {
            c = Self.table[Int(UInt8(truncatingIfNeeded: c) ^ byte)] ^ (c >> 8)
        }
        state = c
    }

    /// The checksum of everything fed so far.
    @inlinable
    public var value: UInt32 { ~state }

    /// The checksum of `bytes`.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }
}
