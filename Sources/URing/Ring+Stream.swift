import CURing

#if canImport(Glibc)
import Glibc
#endif

// SQE preparation for stream (TCP) sockets: accepting connections, receiving
// into provided buffers, and sending from the caller's memory. Same contract
// as Ring+Prepare.swift: false (nothing touched) when the SQ is full.
extension Ring {
    /// A multishot ACCEPT (5.19+) on listening `socket`: one CQE per accepted
    /// connection, `res` = the new file descriptor (close-on-exec) or `-errno`;
    /// a CQE without ``Completion/hasMore`` ends the request (re-arm it).
    /// The peer's address is not collected here: read it with `getpeername`
    /// (accepting is the control path).
    /// The corresponding C function is `io_uring_prep_multishot_accept`.
    @inlinable @discardableResult
    public mutating func prepareAcceptMultishot(socket: Int32, userData: UserData) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_multishot_accept(sqe, socket, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// A RECV on a connected stream `socket` into a buffer picked from
    /// `bufferGroup`: multishot (6.0+; one CQE per chunk while
    /// ``Completion/hasMore``) or single-shot (re-arm after every CQE).
    /// The bytes start at offset 0 of the buffer; `res` is their count, 0 at
    /// end of stream, or `-errno`.
    /// The corresponding C functions are `io_uring_prep_recv_multishot` and
    /// `io_uring_prep_recv`, with `IOSQE_BUFFER_SELECT`.
    @inlinable @discardableResult
    public mutating func prepareStreamReceive(
        socket: Int32, bufferGroup: UInt16, multishot: Bool, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        if multishot {
            io_uring_prep_recv_multishot(sqe, socket, nil, 0, 0)
        } else {
            io_uring_prep_recv(sqe, socket, nil, 0, 0)
        }
        sqe.pointee.user_data = userData.rawValue
        sqe.pointee.flags |= curing_iosqe_buffer_select()
        sqe.pointee.buf_group = bufferGroup
        return true
    }

    /// A CONNECT of stream `socket` to the address at `address` (`length`
    /// bytes), which must stay valid until the CQE: `res` 0 when connected,
    /// or `-errno` (ECONNREFUSED, ETIMEDOUT, ECANCELED after a cancel).
    /// The corresponding C function is `io_uring_prep_connect`.
    @inlinable @discardableResult
    public mutating func prepareConnect(
        socket: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_connect(sqe, socket, address, length)
        sqe.pointee.user_data = userData.rawValue
        return true
    }

    /// A SEND of `count` bytes at `bytes` on a connected stream `socket`
    /// (MSG_NOSIGNAL: a closed peer gives -EPIPE, not SIGPIPE). The bytes
    /// must stay untouched until the CQE, whose `res` is how many were sent
    /// (possibly fewer) or `-errno`.
    /// The corresponding C function is `io_uring_prep_send`.
    @inlinable @discardableResult
    public mutating func prepareStreamSend(
        socket: Int32, bytes: UnsafeRawPointer, count: Int, userData: UserData
    ) -> Bool {
        guard let sqe = nextSQE(userData) else { return false }
        io_uring_prep_send(sqe, socket, bytes, count, Int32(MSG_NOSIGNAL))
        sqe.pointee.user_data = userData.rawValue
        return true
    }
}
