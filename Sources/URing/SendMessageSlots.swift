import CURing

#if canImport(Glibc)
import Glibc
#endif

/// Preallocated `msghdr`s for SENDMSG, one per slot, each with its own
/// destination `sockaddr_storage`, `iovecsPerMessage` iovecs and room for a
/// `UDP_SEGMENT` cmsg. Allocated once per worker; nothing here allocates
/// afterwards.
///
/// A slot is in flight from ``Ring/prepareSendMessage(socket:message:flags:userData:)``
/// until its CQE: the kernel reads the msghdr, iovecs, destination and cmsg
/// then (and the payload bytes the iovecs point at). Put the slot index in
/// the SQE's ``UserData/slot`` so the CQE says which slot (and which receive
/// buffers behind its iovecs) to free.
///
/// ```swift
/// let iov = sends.iovecs(slot)
/// iov[0] = iovec(iov_base: buffers.buffer(id) + offset, iov_len: 100)   // ... one per datagram
/// let msg = sends.prepare(slot, destination: peer, iovecCount: n, segmentSize: 100)
/// ring.prepareSendMessage(socket: fd, message: msg, userData: UserData(kind: send, slot: UInt32(slot)))
/// ```
public struct SendMessageSlots: ~Copyable {
    /// Number of slots.
    public let count: Int
    /// Iovecs per slot (at most 64 segments per GSO send; `UIO_MAXIOV` is 1024).
    public let iovecsPerMessage: Int
    @usableFromInline let messages: UnsafeMutablePointer<msghdr>
    @usableFromInline let names: UnsafeMutablePointer<sockaddr_storage>
    @usableFromInline let iovecStorage: UnsafeMutablePointer<iovec>
    /// `controlStride` bytes per slot, 8-byte aligned.
    @usableFromInline let controls: UnsafeMutableRawPointer
    @usableFromInline let controlStride: Int

    public init(count: Int, iovecsPerMessage: Int) {
        precondition(count > 0 && iovecsPerMessage > 0)
        self.count = count
        self.iovecsPerMessage = iovecsPerMessage
        messages = .allocate(capacity: count)
        messages.initialize(repeating: msghdr(), count: count)
        names = .allocate(capacity: count)
        names.initialize(repeating: sockaddr_storage(), count: count)
        iovecStorage = .allocate(capacity: count * iovecsPerMessage)
        iovecStorage.initialize(repeating: iovec(), count: count * iovecsPerMessage)
        controlStride = curing_cmsg_align(ControlMessages.udpSegmentSpace)
        controls = .allocate(byteCount: count * controlStride, alignment: 8)
        controls.initializeMemory(as: UInt8.self, repeating: 0, count: count * controlStride)
    }

    deinit {
        messages.deallocate()
        names.deallocate()
        iovecStorage.deallocate()
        controls.deallocate()
    }

    /// The iovecs of `slot` (``iovecsPerMessage`` of them) to fill before ``prepare(_:destination:iovecCount:segmentSize:)``.
    @inlinable @inline(__always)
    public func iovecs(_ slot: Int) -> UnsafeMutablePointer<iovec> {
        iovecStorage + slot * iovecsPerMessage
    }

    /// The `msghdr` of `slot` as last prepared.
    @inlinable @inline(__always)
    public func message(_ slot: Int) -> UnsafeMutablePointer<msghdr> { messages + slot }

    /// Fills `slot`'s `msghdr`: destination, the first `iovecCount` iovecs, and
    /// a `UDP_SEGMENT` cmsg when `segmentSize` is given (GSO: the kernel cuts
    /// the payload into datagrams of that size, the last may be shorter; all
    /// iovecs but the last segment's must add up to multiples of it).
    /// Returns the message to pass to ``Ring/prepareSendMessage(socket:message:flags:userData:)``.
    @inlinable @discardableResult
    public func prepare(
        _ slot: Int, destination: SocketAddress, iovecCount: Int, segmentSize: UInt16? = nil
    ) -> UnsafeMutablePointer<msghdr> {
        precondition(slot >= 0 && slot < count && iovecCount <= iovecsPerMessage)
        let m = messages + slot
        let nameLength = destination.write(to: names + slot)
        m.pointee.msg_name = UnsafeMutableRawPointer(names + slot)
        m.pointee.msg_namelen = socklen_t(nameLength)
        m.pointee.msg_iov = iovecs(slot)
        m.pointee.msg_iovlen = iovecCount
        m.pointee.msg_flags = 0
        if let segmentSize {
            let control = controls + slot * controlStride
            m.pointee.msg_control = control
            m.pointee.msg_controllen = ControlMessages.writeUDPSegment(segmentSize, to: control)
        } else {
            m.pointee.msg_control = nil
            m.pointee.msg_controllen = 0
        }
        return m
    }
}
