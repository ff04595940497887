/// What a datagram (or the next frame on a stream) is, by its first byte
/// (RFC 8656 §12, in the style of RFC 7983's demultiplexing): 0b00 STUN,
/// 0b01 ChannelData, anything else is not for a TURN server.
public enum PacketKind: Sendable {
    case stun
    case channelData
    case other

    @inlinable
    public init(classifying bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else {
            self = .other
            return
        }
        switch first >> 6 {
        case 0b00: self = .stun
        case 0b01: self = .channelData
        default: self = .other
        }
    }
}
