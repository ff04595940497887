import CURing
import Glibc
import URing

// Readiness to read, turned into receive and accept completions.
extension EpollReactor {
    /// `IORING_CQE_F_BUFFER`, `IORING_CQE_F_MORE` and the buffer ID's shift:
    /// the flags a multishot receive's CQE carries.
    @inline(__always)
    static func bufferFlags(_ id: UInt16, more: Bool) -> UInt32 {
        IORING_CQE_F_BUFFER | UInt32(id) << UInt32(IORING_CQE_BUFFER_SHIFT) | (more ? IORING_CQE_F_MORE : 0)
    }

    /// Bytes before the payload in a datagram buffer: what multishot RECVMSG
    /// writes there (recvmsg_out header, name, control).
    var receiveOverhead: Int { MemoryLayout<io_uring_recvmsg_out>.size + nameCapacity + controlCapacity }

    /// One `recvmmsg` into as many free buffers as the batch allows; each
    /// datagram completes as a multishot RECVMSG would have (same buffer
    /// layout, same flags). No free buffer: the receive ends with -ENOBUFS
    /// and the worker re-arms it once buffers come back.
    mutating func receiveDatagrams(_ fd: Int32, _ buffers: inout ReceiveBuffers) {
        let entry = fds[fd]
        let large = entry.group == ReceiveBuffers.largeGroup
        var n = 0
        while n < batch, let id = large ? buffers.large.take() : buffers.small.take() {
            taken[n] = id
            n += 1
        }
        guard n > 0 else {
            stats.receivesOutOfBuffers += 1
            disarmRead(fd)
            complete(entry.readUD, -ENOBUFS)
            return
        }
        let overhead = receiveOverhead
        let size = large ? buffers.large.bufferSize : buffers.small.bufferSize
        let header = MemoryLayout<io_uring_recvmsg_out>.size
        for i in 0..<n {
            // The buffer is the process's until its completion is reaped and
            // released; the kernel writes only into the name, control and
            // payload areas named here.
            let base = large ? buffers.large.buffer(taken[i]) : buffers.small.buffer(taken[i])
            vectors[i] = iovec(iov_base: base + overhead, iov_len: size - overhead)
            messages[i] = curing_mmsghdr(
                msg_hdr: msghdr(
                    msg_name: base + header, msg_namelen: socklen_t(nameCapacity), msg_iov: vectors + i,
                    msg_iovlen: 1, msg_control: controlCapacity > 0 ? base + header + nameCapacity : nil,
                    msg_controllen: controlCapacity, msg_flags: 0),
                msg_len: 0)
        }
        let got = curing_recvmmsg(fd, messages, UInt32(n), Int32(MSG_DONTWAIT))
        let used = max(0, Int(got))
        // Buffers the call did not fill go back, last taken first.
        for _ in used..<n {
            if large { buffers.large.untake() } else { buffers.small.untake() }
        }
        if got < 0 {
            if got == -EAGAIN || got == -EINTR { return }
            // A socket error (ECONNREFUSED from an ICMP on a connected
            // socket, ...) ends the receive, as it ends a multishot one.
            disarmRead(fd)
            complete(entry.readUD, got)
            return
        }
        for i in 0..<used {
            let base = large ? buffers.large.buffer(taken[i]) : buffers.small.buffer(taken[i])
            let m = messages[i]
            var out = io_uring_recvmsg_out()
            out.namelen = UInt32(m.msg_hdr.msg_namelen)
            out.controllen = UInt32(m.msg_hdr.msg_controllen)
            out.payloadlen = m.msg_len
            out.flags = UInt32(bitPattern: m.msg_hdr.msg_flags)
            base.storeBytes(of: out, as: io_uring_recvmsg_out.self)
            complete(
                entry.readUD, Int32(overhead) + Int32(m.msg_len), flags: Self.bufferFlags(taken[i], more: true))
        }
    }

    /// One `recv` into a small buffer; completes as RECV with a provided
    /// buffer does. End of stream (0) and errors end the receive.
    mutating func receiveStream(_ fd: Int32, _ buffers: inout ReceiveBuffers) {
        let entry = fds[fd]
        guard let id = buffers.small.take() else {
            stats.receivesOutOfBuffers += 1
            disarmRead(fd)
            complete(entry.readUD, -ENOBUFS)
            return
        }
        let n = recv(fd, buffers.small.buffer(id), buffers.small.bufferSize, Int32(MSG_DONTWAIT))
        if n > 0 {
            if !entry.multishot { disarmRead(fd) }
            complete(entry.readUD, Int32(n), flags: Self.bufferFlags(id, more: entry.multishot))
            return
        }
        buffers.small.untake()
        let e = n == 0 ? 0 : errno
        if e == EAGAIN || e == EINTR { return }
        disarmRead(fd)
        complete(entry.readUD, -e)
    }

    /// Accepts every waiting connection (a bounded number per readiness);
    /// each completes as a multishot ACCEPT does (result: the new socket).
    mutating func acceptConnections(_ fd: Int32) {
        let ud = fds[fd].readUD
        for _ in 0..<batch {
            let s = curing_accept4(fd)
            if s >= 0 {
                // The number may be a closed connection's (see forget).
                forget(s)
                complete(ud, s, flags: IORING_CQE_F_MORE)
                continue
            }
            if s == -EAGAIN || s == -EINTR || s == -ECONNABORTED { return }
            disarmRead(fd)
            complete(ud, s)
            return
        }
    }
}
