/// A ChannelData message (RFC 8656 §12): a 4-byte header (channel number,
/// payload length) and the payload. Over UDP padding is optional; over
/// TCP/TLS the frame is padded to a multiple of 4.
public struct ChannelData {
    /// Bytes of the header.
    public static let headerSize = 4
    /// Channel numbers a frame may carry: RFC 8656 §12 allows 0x4000-0x4FFF,
    /// RFC 5766 allowed up to 0x7FFF and deployed clients (Debian's coturn
    /// 4.6.1 `turnutils_uclient`) still pick from that range. The wire format
    /// accepts both; whether a server binds 0x5000 and up is TURN policy
    /// (`strictChannelNumbers`), and an unbound number is simply not routed.
    public static let validChannels: ClosedRange<UInt16> = 0x4000...0x7FFF
    /// The RFC 8656 range alone.
    public static let rfc8656Channels: ClosedRange<UInt16> = 0x4000...0x4FFF

    public let channelNumber: UInt16
    /// The application data, inside the caller's buffer.
    public let payload: UnsafeRawBufferPointer

    /// Parses a ChannelData message at the start of `bytes`. Bytes after the
    /// payload (UDP padding or, on a stream, the next frame) are not looked at.
    @inlinable
    public init(parsing bytes: UnsafeRawBufferPointer) throws(STUNError) {
        guard bytes.count >= Self.headerSize else { throw .truncatedChannelData }
        let channel = bytes.be16(0)
        guard Self.validChannels.contains(channel) else { throw .invalidChannelNumber(channel) }
        let length = Int(bytes.be16(2))
        guard length <= bytes.count - Self.headerSize else { throw .truncatedChannelData }
        channelNumber = channel
        payload = UnsafeRawBufferPointer(rebasing: bytes[Self.headerSize..<(Self.headerSize + length)])
    }

    /// Size of a frame carrying `payloadLength` bytes: unpadded for UDP,
    /// padded to 4 for stream transports.
    @inlinable
    public static func frameSize(payloadLength: Int, stream: Bool) -> Int {
        headerSize + (stream ? padded4(payloadLength) : payloadLength)
    }

    /// For stream framing: the size of the frame at the start of `bytes`
    /// (padded), or nil when fewer than 4 bytes are available.
    @inlinable
    public static func streamFrameSize(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= headerSize else { return nil }
        return frameSize(payloadLength: Int(bytes.be16(2)), stream: true)
    }

    /// Writes the 4-byte header at `pointer` (the caller guarantees 4 writable bytes).
    @inlinable
    public static func writeHeader(channel: UInt16, payloadLength: UInt16, to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: channel.bigEndian, as: UInt16.self)
        (pointer + 2).storeBytes(of: payloadLength.bigEndian, as: UInt16.self)
    }

    /// Frames a payload already sitting at `buffer[4..<4 + payloadLength]`
    /// (receive buffers keep 4 bytes of headroom for this): writes the header in
    /// front and, for streams, zero padding behind. Returns the frame size.
    @inlinable
    public static func frame(
        in buffer: UnsafeMutableRawBufferPointer, channel: UInt16, payloadLength: Int, stream: Bool
    ) throws(STUNError) -> Int {
        guard validChannels.contains(channel) else { throw .invalidChannelNumber(channel) }
        guard payloadLength >= 0, payloadLength <= 0xFFFF else { throw .invalidArgument }
        let size = frameSize(payloadLength: payloadLength, stream: stream)
        guard size <= buffer.count else { throw .bufferTooSmall }
        writeHeader(channel: channel, payloadLength: UInt16(payloadLength), to: buffer.baseAddress!)
        for i in (headerSize + payloadLength)..<size {
            buffer[i] = 0
        }
        return size
    }
}
