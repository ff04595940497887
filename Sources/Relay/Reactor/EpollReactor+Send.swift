import CURing
import Glibc
import URing

// Sends: performed at flush, batched per socket, and kept in order when a
// socket cannot take them yet.
extension EpollReactor {
    /// Sends `first` and every datagram send right behind it in the pending
    /// queue on the same socket, `batch` at a time, with `sendmmsg`. Each
    /// message completes with its byte count or its own error: a call that
    /// stops part way (the kernel refused message k) is followed by another
    /// from k, which reports k's error and goes on with k + 1. EAGAIN keeps
    /// the rest, in order, for EPOLLOUT.
    mutating func sendRun(first: Submission, fd: Int32) {
        guard case .sendMessage(_, let message, let ud) = first else { return }
        sendHeaders[0] = message
        sendTags[0] = ud
        var n = 1
        while n < batch, let p = pending.first, case .sendMessage(let pfd, let m, let u) = p, pfd == fd {
            pending.removeFirst()
            sendHeaders[n] = m
            sendTags[n] = u
            n += 1
        }
        // sendmmsg reads the msghdr by value; the iovecs, names and cmsgs it
        // points to stay the batcher's until the completion.
        for i in 0..<n { messages[i] = curing_mmsghdr(msg_hdr: sendHeaders[i].pointee, msg_len: 0) }
        fds.reserve(fd)
        if fds[fd].waitingSends > 0 {
            for i in 0..<n { wait(.sendMessage(socket: fd, message: sendHeaders[i], userData: sendTags[i]), fd: fd) }
            return
        }
        var i = 0
        while i < n {
            let r = curing_sendmmsg(fd, messages + i, UInt32(n - i), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            if r > 0 {
                for k in i..<(i + Int(r)) { complete(sendTags[k], Int32(messages[k].msg_len)) }
                if i + Int(r) < n { stats.partialBatches += 1 }
                i += Int(r)
                continue
            }
            if r == -EINTR { continue }
            if r == -EAGAIN || r == -EWOULDBLOCK {
                for k in i..<n {
                    wait(.sendMessage(socket: fd, message: sendHeaders[k], userData: sendTags[k]), fd: fd)
                }
                return
            }
            complete(sendTags[i], r == 0 ? -EIO : r)
            i += 1
        }
    }

    /// A SEND of connection bytes: written now, or (EAGAIN, or older sends
    /// still waiting on this socket) kept for EPOLLOUT. A short write
    /// completes with the count written, as io_uring's SEND may; the stream
    /// part sends the rest.
    mutating func streamSend(_ s: Submission, fd: Int32) {
        fds.reserve(fd)
        if fds[fd].waitingSends > 0 {
            wait(s, fd: fd)
            return
        }
        if !trySend(s) { wait(s, fd: fd) }
    }

    /// Performs one send; false when the socket would block (EAGAIN).
    private mutating func trySend(_ s: Submission) -> Bool {
        switch s {
        case .streamSend(let fd, let bytes, let count, let ud):
            return attempt(ud) { send(fd, bytes, count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        case .sendMessage(let fd, let message, let ud):
            return attempt(ud) { sendmsg(fd, message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        default:
            return true
        }
    }

    /// Runs a send call until it is not interrupted: completes `ud` with its
    /// result or error and returns true, or returns false on EAGAIN (nothing
    /// completed; the send waits for EPOLLOUT).
    private mutating func attempt(_ ud: UserData, _ call: () -> Int) -> Bool {
        while true {
            let r = call()
            if r >= 0 {
                complete(ud, Int32(r))
                return true
            }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return false }
            complete(ud, -e)
            return true
        }
    }

    private mutating func wait(_ s: Submission, fd: Int32) {
        stats.sendsDeferred += 1
        waiting.append(s)
        fds[fd].waitingSends += 1
        if fds[fd].waitingSends == 1 { updateInterest(fd) }
    }

    /// EPOLLOUT on `fd`: its waiting sends go out in order until the socket
    /// refuses again.
    mutating func retryWaitingSends(_ fd: Int32) {
        while fds[fd].waitingSends > 0, let i = waiting.oldest(forDescriptor: fd) {
            guard trySend(waiting[i]) else { break }
            waiting.remove(at: i)
            fds[fd].waitingSends -= 1
        }
        if fds[fd].waitingSends == 0 { updateInterest(fd) }
    }
}

/// Sends a socket refused with EAGAIN, in submission order. Only sockets
/// under back-pressure have entries, so walking it on EPOLLOUT is cheap;
/// the storage is reserved at start and grows only past that (control path
/// of an overloaded worker).
struct WaitingSends: ~Copyable {
    private var storage: UnsafeMutablePointer<Submission>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    mutating func append(_ s: Submission) {
        if count == capacity {
            let bigger = UnsafeMutablePointer<Submission>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: storage, count: count)
            storage.deallocate()
            storage = bigger
            capacity *= 2
        }
        (storage + count).initialize(to: s)
        count += 1
    }

    /// Index of the oldest send for `fd`.
    func oldest(forDescriptor fd: Int32) -> Int? {
        for i in 0..<count where storage[i].descriptor == fd { return i }
        return nil
    }

    subscript(i: Int) -> Submission { storage[i] }

    /// Removes entry `i`; the others keep their order.
    mutating func remove(at i: Int) {
        for k in i..<(count - 1) { storage[k] = storage[k + 1] }
        count -= 1
    }
}

extension Submission {
    /// The tag of a send (zero for other operations).
    var userData: UserData {
        switch self {
        case .sendMessage(_, _, let ud), .streamSend(_, _, _, let ud): ud
        default: UserData(rawValue: 0)
        }
    }

    /// The socket a send is for (-1 for other operations).
    var descriptor: Int32 {
        switch self {
        case .sendMessage(let fd, _, _), .streamSend(let fd, _, _, _): fd
        default: -1
        }
    }
}
