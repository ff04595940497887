/// Cuts a TCP or TLS byte stream into STUN messages and ChannelData frames
/// (RFC 8656 §3.1, §12.5).
///
/// A stream has no datagram boundaries, so the receiver learns where a frame
/// ends from its first 4 bytes: a STUN message (top bits 0b00) is 20 bytes of
/// header plus the length in bytes 2-3; a ChannelData frame (top bits 0b01,
/// channel 0x4000-0x7FFF) is 4 bytes of header plus the length in bytes 2-3,
/// padded to a multiple of 4 because over streams the padding is mandatory.
///
/// Only the framing is checked here. The magic cookie, the attributes and
/// whether the channel is bound are the parser's and TURN's business once the
/// whole frame is in hand; anything the framing cannot delimit throws and the
/// caller closes the connection, since there is no way to resynchronise.
public enum StreamFraming {
    /// What the start of the stream holds.
    public enum Next: Equatable, Sendable {
        /// Not enough bytes yet: the stream must hold at least `atLeast` bytes
        /// (counted from the start of the frame) before asking again. That is 4
        /// while the length is unknown, else the whole frame's size.
        case needMore(atLeast: Int)
        /// A whole frame is present. Hand `bytes[0..<messageLength]` to the
        /// STUN or ChannelData parser, then drop `consumedLength` bytes (the
        /// ChannelData padding included) to reach the next frame.
        case frame(messageLength: Int, consumedLength: Int)
    }

    /// Bytes that hold the length of either kind of frame.
    public static let lengthPrefix = 4

    /// The largest STUN message a stream can carry: the 16-bit length must be
    /// a multiple of 4, so 20 + 65532.
    public static let maxSTUNLength = STUNHeader.size + 0xFFFC

    /// The largest ChannelData frame: 4 + 65535 + 1 byte of padding.
    public static let maxChannelDataLength = ChannelData.headerSize + 0x1_0000

    /// A receive buffer this large always holds a whole frame (65552 bytes).
    public static let maxFrameLength = max(maxSTUNLength, maxChannelDataLength)

    /// The next frame at the start of `bytes`.
    ///
    /// Throws `.notSTUNOrChannelData` when the first byte's top bits are 0b10
    /// or 0b11 (checked as soon as one byte is there), and
    /// `.lengthNotMultipleOfFour` for a STUN length that is not a multiple of 4.
    /// Reads at most the first 4 bytes; makes no allocation.
    @inlinable
    public static func next(_ bytes: UnsafeRawBufferPointer) throws(STUNError) -> Next {
        guard let first = bytes.first else { return .needMore(atLeast: lengthPrefix) }
        let isSTUN: Bool
        switch first >> 6 {
        case 0b00: isSTUN = true
        case 0b01: isSTUN = false  // every 0b01 first byte is a channel in 0x4000...0x7FFF
        default: throw .notSTUNOrChannelData
        }
        guard bytes.count >= lengthPrefix else { return .needMore(atLeast: lengthPrefix) }
        let length = Int(bytes.be16(2))
        let messageLength: Int
        let consumedLength: Int
        if isSTUN {
            guard length & 3 == 0 else { throw .lengthNotMultipleOfFour }
            messageLength = STUNHeader.size + length
            consumedLength = messageLength
        } else {
            messageLength = ChannelData.headerSize + length
            consumedLength = ChannelData.headerSize + padded4(length)
        }
        guard bytes.count >= consumedLength else { return .needMore(atLeast: consumedLength) }
        return .frame(messageLength: messageLength, consumedLength: consumedLength)
    }
}
