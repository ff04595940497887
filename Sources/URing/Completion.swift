import CURing

/// One completion queue entry, copied out of the CQ ring.
///
/// A plain 16-byte value: reading it costs nothing and holding it does not pin
/// the CQ slot (the ring advances its head once per batch).
@frozen
public struct Completion: Sendable, Hashable, CustomStringConvertible {
    /// The `user_data` the SQE was prepared with.
    public var userData: UserData
    /// The result: a byte count or other non-negative value on success, `-errno` on failure.
    public var result: Int32
    /// `IORING_CQE_F_*` flags.
    public var flags: UInt32

    @inlinable @inline(__always)
    public init(userData: UserData, result: Int32, flags: UInt32) {
        self.userData = userData
        self.result = result
        self.flags = flags
    }

    /// The failure, when `result` is negative.
    @inlinable
    public var error: Errno? { result < 0 ? Errno(rawValue: -result) : nil }

    /// `IORING_CQE_F_MORE`: the multishot request that produced this CQE is still
    /// armed. A multishot CQE *without* it means the request ended (buffer ring
    /// empty, error, or cancel) and must be re-armed.
    @inlinable @inline(__always)
    public var hasMore: Bool { flags & IORING_CQE_F_MORE != 0 }

    /// `IORING_CQE_F_BUFFER`: a provided buffer was consumed; see ``bufferID``.
    @inlinable @inline(__always)
    public var hasBuffer: Bool { flags & IORING_CQE_F_BUFFER != 0 }

    /// The provided buffer's ID when ``hasBuffer``; nil otherwise. The buffer
    /// belongs to the application until it is passed to ``BufferRing/recycle(_:)``.
    @inlinable @inline(__always)
    public var bufferID: UInt16? {
        hasBuffer ? UInt16(truncatingIfNeeded: flags >> UInt32(IORING_CQE_BUFFER_SHIFT)) : nil
    }

    /// `IORING_CQE_F_SOCK_NONEMPTY`: more data was queued on the socket after this receive.
    @inlinable @inline(__always)
    public var socketNonEmpty: Bool { flags & IORING_CQE_F_SOCK_NONEMPTY != 0 }

    /// `IORING_CQE_F_NOTIF`: a zero-copy send notification.
    @inlinable @inline(__always)
    public var isNotification: Bool { flags & IORING_CQE_F_NOTIF != 0 }

    public var description: String {
        "Completion(\(userData), res: \(result), flags: 0x\(String(flags, radix: 16)))"
    }
}

/// The name the brief and liburing use.
public typealias CQE = Completion
