/// Fixed facts of the 20-byte STUN header (RFC 8489 §5).
public enum STUNHeader {
    /// Bytes in the header.
    public static let size = 20
    /// The magic cookie every RFC 5389+ message carries at bytes 4..<8.
    public static let magicCookie: UInt32 = 0x2112_A442

    /// The whole message size (header + length field) if `bytes` starts with
    /// a plausible STUN header, else nil. For stream framing: it reads only
    /// the first 20 bytes and checks the top bits, length alignment and cookie.
    @inlinable
    public static func messageSize(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= size else { return nil }
        let type = bytes.be16(0)
        let length = bytes.be16(2)
        guard type & 0xC000 == 0, length & 3 == 0, bytes.be32(4) == magicCookie else { return nil }
        return size + Int(length)
    }
}

// Big-endian reads. Each caller has checked `offset + width <= count` first;
// `loadUnaligned` adds its own debug-build bounds check on top.
extension UnsafeRawBufferPointer {
    @inlinable
    func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable
    func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable
    func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

/// Rounds a value length up to the 4-byte attribute boundary.
@inlinable
func padded4(_ n: Int) -> Int { (n + 3) & ~3 }
