import CURing

#if canImport(Glibc)
import Glibc
#endif

/// The `msghdr` a RECVMSG SQE points at, owned and at a stable address.
///
/// It tells the kernel how much room to give the source address (always a
/// full `sockaddr_storage`) and control messages (``controlCapacity``).
///
/// **Multishot** (6.0+): the kernel reads only `msg_namelen` and
/// `msg_controllen` from it while preparing the SQE, and writes everything
/// into the provided buffer, laid out as:
/// ```
/// +--------------------------+ buffer start
/// | io_uring_recvmsg_out (16)|  namelen, controllen, payloadlen, flags
/// +--------------------------+
/// | name (128)               |  sockaddr_in / sockaddr_in6, rest unused
/// +--------------------------+
/// | control (controlCapacity)|  cmsgs, e.g. UDP_GRO segment size
/// +--------------------------+ ReceiveMessageHeader.multishotOverhead
/// | payload ...              |  up to bufferSize - multishotOverhead bytes
/// +--------------------------+
/// ```
/// One header can serve every multishot receive on a ring.
///
/// **Single-shot** (the 5.19 path): the payload alone lands at the start of the
/// provided buffer; the source address, control messages and flags are written
/// into *this* header. Use one header per socket with a receive in flight,
/// and parse before re-arming.
///
/// The helpers below wrap `io_uring_recvmsg_validate`, `io_uring_recvmsg_name`,
/// `io_uring_recvmsg_payload` and `io_uring_recvmsg_payload_length`.
public struct ReceiveMessageHeader: ~Copyable {
    /// The `msghdr` to pass to the kernel. Valid until the header is destroyed.
    public let message: UnsafeMutablePointer<msghdr>
    @usableFromInline let name: UnsafeMutablePointer<sockaddr_storage>
    @usableFromInline let control: UnsafeMutableRawPointer
    /// Bytes reserved for control messages.
    public let controlCapacity: Int

    /// Room for one UDP_GRO cmsg (an `int`) plus one IP_PKTINFO/IPV6_PKTINFO.
    public static var defaultControlCapacity: Int {
        curing_cmsg_space(MemoryLayout<Int32>.size) + curing_cmsg_space(20 /* sizeof(struct in6_pktinfo), which Glibc hides behind _GNU_SOURCE */)
    }

    /// Bytes at the start of each provided buffer that multishot RECVMSG uses
    /// before the payload (recvmsg_out header + name + control).
    @inlinable
    public var multishotOverhead: Int {
        MemoryLayout<io_uring_recvmsg_out>.size + MemoryLayout<sockaddr_storage>.size + controlCapacity
    }

    public init(controlCapacity: Int = ReceiveMessageHeader.defaultControlCapacity) {
        let control = curing_cmsg_align(controlCapacity)
        self.controlCapacity = control
        message = .allocate(capacity: 1)
        name = .allocate(capacity: 1)
        name.initialize(to: sockaddr_storage())
        self.control = .allocate(byteCount: max(control, 8), alignment: 8)
        self.control.initializeMemory(as: UInt8.self, repeating: 0, count: max(control, 8))
        message.initialize(to: msghdr())
        reset()
    }

    deinit {
        message.deallocate()
        name.deallocate()
        control.deallocate()
    }

    /// Restores `msg_namelen`, `msg_controllen` and `msg_flags`, which a
    /// single-shot receive overwrites. The ring's prepare methods call this.
    @inlinable
    public func reset() {
        message.pointee.msg_name = UnsafeMutableRawPointer(name)
        message.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        message.pointee.msg_iov = nil
        message.pointee.msg_iovlen = 0
        message.pointee.msg_control = controlCapacity > 0 ? control : nil
        message.pointee.msg_controllen = controlCapacity
        message.pointee.msg_flags = 0
    }

    /// Parses a provided buffer filled by a **multishot** RECVMSG.
    ///
    /// - Parameters:
    ///   - buffer: the start of the buffer named by the CQE's buffer ID.
    ///   - length: the CQE's `res` (bytes the kernel wrote, header included).
    /// - Returns: nil if `length` is too short to hold the header (which means
    ///   the buffers are smaller than ``multishotOverhead``).
    @inlinable
    public func parseMultishot(buffer: UnsafeMutableRawPointer, length: Int32) -> ReceivedMessage? {
        // The liburing helpers read msg_namelen / msg_controllen from the
        // msghdr; a multishot receive never writes them back, and every
        // prepare call resets them, so they still hold the layout here.
        guard let out = io_uring_recvmsg_validate(buffer, length, message) else { return nil }
        let nameBytes = min(Int(out.pointee.namelen), MemoryLayout<sockaddr_storage>.size)
        let payload = io_uring_recvmsg_payload(out, message)!
        let payloadLength = Int(io_uring_recvmsg_payload_length(out, length, message))
        let controlStart = UnsafeRawPointer(io_uring_recvmsg_name(out)!) + MemoryLayout<sockaddr_storage>.size
        return ReceivedMessage(
            name: UnsafeRawBufferPointer(start: io_uring_recvmsg_name(out), count: nameBytes),
            control: UnsafeRawBufferPointer(
                start: controlStart, count: min(Int(out.pointee.controllen), controlCapacity)),
            payload: UnsafeMutableRawBufferPointer(start: payload, count: payloadLength),
            flags: Int32(bitPattern: out.pointee.flags),
            fullPayloadLength: Int(out.pointee.payloadlen)
        )
    }

    /// Parses a **single-shot** RECVMSG: the payload is the first `length`
    /// bytes of the provided buffer; address, control and flags are in this header.
    @inlinable
    public func parseSingleShot(buffer: UnsafeMutableRawPointer, length: Int32) -> ReceivedMessage {
        let m = message.pointee
        return ReceivedMessage(
            name: UnsafeRawBufferPointer(
                start: name, count: min(Int(m.msg_namelen), MemoryLayout<sockaddr_storage>.size)),
            control: UnsafeRawBufferPointer(start: control, count: min(m.msg_controllen, controlCapacity)),
            payload: UnsafeMutableRawBufferPointer(start: buffer, count: max(0, Int(length))),
            flags: m.msg_flags,
            fullPayloadLength: max(0, Int(length))
        )
    }
}

/// One received datagram, pointing into a provided buffer (and, for the
/// single-shot path, into the ``ReceiveMessageHeader``). Valid until the
/// buffer is recycled or the header re-armed.
@frozen
public struct ReceivedMessage {
    /// The source `sockaddr` bytes; decode with ``sourceAddress``.
    public var name: UnsafeRawBufferPointer
    /// The control messages (cmsgs) the kernel delivered.
    public var control: UnsafeRawBufferPointer
    /// The datagram bytes that fit in the buffer.
    public var payload: UnsafeMutableRawBufferPointer
    /// `MSG_*` flags from the receive (`MSG_TRUNC`, `MSG_CTRUNC`).
    public var flags: Int32
    /// The datagram's size on the wire (multishot reports it even when truncated).
    public var fullPayloadLength: Int

    @inlinable
    public init(
        name: UnsafeRawBufferPointer, control: UnsafeRawBufferPointer, payload: UnsafeMutableRawBufferPointer,
        flags: Int32, fullPayloadLength: Int
    ) {
        self.name = name
        self.control = control
        self.payload = payload
        self.flags = flags
        self.fullPayloadLength = fullPayloadLength
    }

    /// The sender, decoded from ``name``.
    @inlinable
    public var sourceAddress: SocketAddress? { SocketAddress(sockaddr: name) }

    /// The datagram did not fit in the buffer (`MSG_TRUNC`); ``payload`` is a prefix.
    @inlinable
    public var isPayloadTruncated: Bool { flags & Int32(MSG_TRUNC) != 0 || fullPayloadLength > payload.count }

    /// Some control messages were dropped for lack of room (`MSG_CTRUNC`).
    @inlinable
    public var isControlTruncated: Bool { flags & Int32(MSG_CTRUNC) != 0 }

    /// Visits each control message: `(level, type, data)`. Stops early if
    /// `body` returns false.
    @inlinable
    public func forEachControlMessage(_ body: (Int32, Int32, UnsafeRawBufferPointer) -> Bool) {
        ControlMessages.forEach(in: control, body)
    }

    /// The segment size from a `UDP_GRO` cmsg: the payload is a train of
    /// datagrams of this size (the last may be shorter). Nil if not coalesced.
    @inlinable
    public var groSegmentSize: Int? {
        var size: Int?
        forEachControlMessage { level, type, data in
            if level == Int32(SOL_UDP), type == curing_udp_gro(), data.count >= 4 {
                size = Int(data.loadUnaligned(as: Int32.self))
                return false
            }
            return true
        }
        return size
    }
}

/// Walking and writing cmsgs over raw bytes, with the kernel's alignment rules
/// (`CMSG_ALIGN` to `size_t`, header `struct cmsghdr` of 16 bytes on 64-bit).
public enum ControlMessages {
    /// `CMSG_LEN(0)`: the header size.
    @inlinable
    public static var headerLength: Int { curing_cmsg_len(0) }

    /// `CMSG_SPACE(dataLength)`.
    @inlinable
    public static func space(for dataLength: Int) -> Int { curing_cmsg_space(dataLength) }

    /// Visits each cmsg in `control` as `(level, type, data)`; stops when
    /// `body` returns false or at the first malformed length.
    @inlinable
    public static func forEach(in control: UnsafeRawBufferPointer, _ body: (Int32, Int32, UnsafeRawBufferPointer) -> Bool)
    {
        guard let base = control.baseAddress else { return }
        let header = headerLength
        var offset = 0
        while offset + header <= control.count {
            let length = Int(base.loadUnaligned(fromByteOffset: offset, as: Int.self))  // cmsg_len (size_t)
            guard length >= header, offset + length <= control.count else { return }
            let level = base.loadUnaligned(fromByteOffset: offset + 8, as: Int32.self)
            let type = base.loadUnaligned(fromByteOffset: offset + 12, as: Int32.self)
            let data = UnsafeRawBufferPointer(start: base + offset + header, count: length - header)
            if !body(level, type, data) { return }
            offset += curing_cmsg_align(length)
        }
    }

    /// Bytes of control space a `UDP_SEGMENT` cmsg takes: `CMSG_SPACE(2)`.
    @inlinable
    public static var udpSegmentSpace: Int { curing_cmsg_space(MemoryLayout<UInt16>.size) }

    /// Writes a `UDP_SEGMENT` (GSO) cmsg at `destination`, which must be
    /// 8-byte aligned with room for ``udpSegmentSpace`` bytes, and returns the
    /// number of bytes to put in `msg_controllen`. The kernel then cuts the
    /// send's payload into datagrams of `segmentSize` bytes (the last may be
    /// shorter); at most 64 segments and 64 KiB in total.
    @inlinable
    public static func writeUDPSegment(_ segmentSize: UInt16, to destination: UnsafeMutableRawPointer) -> Int {
        let space = udpSegmentSpace
        destination.initializeMemory(as: UInt8.self, repeating: 0, count: space)
        destination.storeBytes(of: curing_cmsg_len(MemoryLayout<UInt16>.size), as: Int.self)
        destination.storeBytes(of: Int32(SOL_UDP), toByteOffset: 8, as: Int32.self)
        destination.storeBytes(of: curing_udp_segment(), toByteOffset: 12, as: Int32.self)
        destination.storeBytes(of: segmentSize, toByteOffset: headerLength, as: UInt16.self)
        return space
    }
}
