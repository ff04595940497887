import CURing

#if canImport(Glibc)
import Glibc
#endif

/// The kernel's `struct __kernel_timespec` (two 64-bit fields), as timeouts take it.
public typealias KernelTimespec = __kernel_timespec

extension KernelTimespec {
    /// A relative timespec for `duration` (negative durations become zero).
    @inlinable
    public init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: max(0, seconds), tv_nsec: seconds < 0 ? 0 : attoseconds / 1_000_000_000)
    }
}

// SQE preparation. Every method takes the next free SQE, fills it, tags it
// with `userData`, and returns false (touching nothing) when the SQ is full:
// submit, reap, and try again. Pointers handed to the kernel must stay valid
// until the SQE has been submitted (timespecs, the msghdr of a multishot
// receive) or until the operation completes (buffers, the msghdr and
// everything it points at for sends and single-shot receives).
extension Ring {
    @inlinable @inline(__always)
    mutating func nextSQE(_ userData: UserData) -> UnsafeMutablePointer<io_uring_sqe>? {
        // io_uring_prep_rw sets every field the prep helpers use except
        // user_data, which each method sets after the prep call.
        io_uring_get_sqe(raw)
    }

    /// A no-op that completes with `res == 0`. The corresponding C function is `io_uring_prep_nop`.
    @inlinable @discardableResult
    public mutating func prepareNop(userData: UserData) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_nop(sqe)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// A multishot RECVMSG (6.0+) on `socket`, drawing buffers from `bufferGroup`.
    ///
    /// Each datagram produces a CQE with `res` = bytes written into the buffer
    /// (parse with ``ReceiveMessageHeader/parseMultishot(buffer:length:)``) and
    /// ``Completion/hasMore`` set. A CQE without `hasMore` ends the request:
    /// typically `-ENOBUFS` (buffer ring empty; recycle and re-arm), or an
    /// error, or `-ECANCELED`. It may still carry a buffer: handle it first.
    ///
    /// `header` is read while the SQE is submitted; keep it alive until then.
    /// The corresponding C function is `io_uring_prep_recvmsg_multishot` with
    /// `IOSQE_BUFFER_SELECT`.
    @inlinable @discardableResult
    public mutating func prepareReceiveMessageMultishot(
        socket: Int32, header: borrowing ReceiveMessageHeader, bufferGroup: UInt16, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        header.reset()
        io_uring_prep_recvmsg_multishot(sqe, socket, header.message, 0)
        sqe.pointee.user_data = userData.rawValue
        sqe.pointee.flags |= curing_iosqe_buffer_select()
        sqe.pointee.buf_group = bufferGroup
        return true
    }

    /// A single-shot RECVMSG on `socket` with a buffer from `bufferGroup` (the
    /// 5.19 path; re-arm after every CQE).
    ///
    /// The payload lands at the start of the buffer (`res` bytes); the source
    /// address, control and flags land in `header`, which must stay alive and
    /// untouched until the CQE: parse with
    /// ``ReceiveMessageHeader/parseSingleShot(buffer:length:)``, then re-arm.
    /// The corresponding C function is `io_uring_prep_recvmsg` with `IOSQE_BUFFER_SELECT`.
    @inlinable @discardableResult
    public mutating func prepareReceiveMessage(
        socket: Int32, header: borrowing ReceiveMessageHeader, bufferGroup: UInt16, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        header.reset()
        io_uring_prep_recvmsg(sqe, socket, header.message, 0)
        sqe.pointee.user_data = userData.rawValue
        sqe.pointee.flags |= curing_iosqe_buffer_select()
        sqe.pointee.buf_group = bufferGroup
        return true
    }

    /// A SENDMSG of the caller's `message` on `socket`.
    ///
    /// `message` and everything it points at (destination `msg_name`, iovecs,
    /// the buffers, a `UDP_SEGMENT` cmsg written with
    /// ``ControlMessages/writeUDPSegment(_:to:)``) must stay valid until the CQE.
    /// `res` is the number of bytes sent or `-errno` (GSO refused: EINVAL, EIO
    /// or ENOPROTOOPT). The corresponding C function is `io_uring_prep_sendmsg`.
    @inlinable @discardableResult
    public mutating func prepareSendMessage(
        socket: Int32, message: UnsafePointer<msghdr>, flags: Int32 = 0, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_sendmsg(sqe, socket, message, UInt32(bitPattern: flags))
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// A timeout on the caller's `timespec` (read while the SQE is submitted).
    ///
    /// Completes with `-ETIME` when it fires, `0` if `count` other CQEs
    /// arrived first (`count == 0`: pure timer), or `-ECANCELED` if removed.
    /// `flags` are `IORING_TIMEOUT_*` (e.g. `IORING_TIMEOUT_ABS`,
    /// `IORING_TIMEOUT_BOOTTIME`). The corresponding C function is `io_uring_prep_timeout`.
    @inlinable @discardableResult
    public mutating func prepareTimeout(
        _ timespec: UnsafeMutablePointer<KernelTimespec>, count: UInt32 = 0, flags: UInt32 = 0, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_timeout(sqe, timespec, count, flags)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// A relative timeout of `duration`, its timespec kept by the ring (one
    /// slot per SQ entry, so any number may be prepared between submits).
    @inlinable @discardableResult
    public mutating func prepareTimeout(after duration: Duration, count: UInt32 = 0, userData: UserData) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        let slot = Int((raw.pointee.sq.sqe_tail &- 1) & raw.pointee.sq.ring_mask)
        timespecs[slot] = KernelTimespec(duration)
        io_uring_prep_timeout(sqe, timespecs + slot, count, 0)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// Removes the pending timeout tagged `target`. The removed timeout
    /// completes with `-ECANCELED`; this SQE with 0, `-ENOENT` or `-EALREADY`.
    /// The corresponding C function is `io_uring_prep_timeout_remove`.
    @inlinable @discardableResult
    public mutating func prepareTimeoutRemove(target: UserData, userData: UserData) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_timeout_remove(sqe, target.rawValue, 0)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// Cancels the request(s) tagged `target` (all of them if `all`). The
    /// cancelled request completes with `-ECANCELED`; this SQE with 0 (or the
    /// number cancelled with `all`), `-ENOENT` or `-EALREADY`.
    /// The corresponding C function is `io_uring_prep_cancel64`.
    @inlinable @discardableResult
    public mutating func prepareCancel(target: UserData, all: Bool = false, userData: UserData) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_cancel64(sqe, target.rawValue, all ? Int32(bitPattern: IORING_ASYNC_CANCEL_ALL) : 0)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// Cancels every request on file descriptor `fd` (5.19+): use before
    /// closing a socket that has a receive armed.
    /// The corresponding C function is `io_uring_prep_cancel_fd` with `IORING_ASYNC_CANCEL_ALL`.
    @inlinable @discardableResult
    public mutating func prepareCancel(fileDescriptor fd: Int32, userData: UserData) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// A read of `length` bytes from `fd` into `buffer` (at the file's current
    /// position). The corresponding C function is `io_uring_prep_read`.
    @inlinable @discardableResult
    public mutating func prepareRead(
        fileDescriptor fd: Int32, into buffer: UnsafeMutableRawPointer, length: UInt32, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_read(sqe, fd, buffer, length, UInt64.max)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// Posts a CQE on another ring (`IORING_OP_MSG_RING`, 5.18+): the ring whose
    /// ``fileDescriptor`` is `targetRing` gets a CQE with `user_data ==
    /// targetUserData` and `res == result`, waking it if it waits. This ring gets
    /// a CQE tagged `userData` (0 or `-errno`). A ring-to-ring alternative to
    /// ``Waker`` when the sender is itself a ring thread.
    /// The corresponding C function is `io_uring_prep_msg_ring`.
    @inlinable @discardableResult
    public mutating func prepareMessageRing(
        targetRing: Int32, result: Int32, targetUserData: UserData, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_msg_ring(sqe, targetRing, UInt32(bitPattern: result), targetUserData.rawValue, 0)
        sqe.pointee.user_data = userData.rawValue
        return true
    }
}
