import CURing
import Glibc
import URing

/// The completion source for hosts that refuse io_uring (container seccomp
/// profiles, `kernel.io_uring_disabled`): epoll readiness turned into the
/// completions an io_uring would post, so every worker part and the
/// dispatch are the same for both backends.
///
/// How each `Submission` is emulated:
/// - receives (datagram and stream) and accepts are *armed*: the socket is
///   watched for EPOLLIN (level-triggered) and each readiness does one batch
///   of I/O — one `recvmmsg` into buffers taken from the same provided-buffer
///   rings (written in the multishot RECVMSG layout, so `Reactor.received`
///   parses both backends alike), one `recv`, or `accept4` until EAGAIN —
///   each result a completion with `F_MORE` while the receive stays armed;
///   no free buffer ends it with -ENOBUFS, as a multishot receive ends;
/// - sends run at `flush`: consecutive datagram sends on one socket go out
///   in one `sendmmsg` (UDP_SEGMENT cmsgs pass through unchanged); what the
///   socket refuses with EAGAIN waits, in order, until EPOLLOUT, and a send
///   submitted later on that socket queues behind it (nothing is lost and
///   nothing overtakes);
/// - connect is started nonblocking and completes on EPOLLOUT with SO_ERROR;
/// - cancel drops the armed receive, accept or connect and completes it
///   with -ECANCELED (no `F_MORE`), as io_uring does;
/// - the waker's eventfd is watched like a socket and completes as `.wake`.
/// Timers are the wait's timeout (the worker's next tick).
///
/// Per packet: no allocation, no lock, no reference counting: the tables
/// are indexed by file descriptor and sized at start (a higher descriptor
/// grows them once, on the control path, when a socket is first armed).
struct EpollReactor: ~Copyable {
    let epoll: Int32
    /// What is armed on each descriptor.
    var fds: DescriptorTable
    private var ready: CompletionQueue
    /// Submissions not yet performed (performed in order at `flush`).
    var pending: SubmissionBacklog
    /// Sends a socket refused with EAGAIN, oldest first.
    var waiting: WaitingSends
    /// Layout of a received datagram in its buffer (the multishot one).
    let nameCapacity: Int
    let controlCapacity: Int
    /// Scratch for one `recvmmsg`/`sendmmsg` batch.
    let messages: UnsafeMutablePointer<curing_mmsghdr>
    let vectors: UnsafeMutablePointer<iovec>
    let taken: UnsafeMutablePointer<UInt16>
    let sendHeaders: UnsafeMutablePointer<UnsafePointer<msghdr>>
    let sendTags: UnsafeMutablePointer<UserData>
    /// The datagrams per `recvmmsg` and `sendmmsg` call.
    let batch: Int
    private let eventData: UnsafeMutablePointer<UInt64>
    private let eventFlags: UnsafeMutablePointer<UInt32>
    private let eventCapacity: Int
    private var wakeFD: Int32 = -1
    private var wakeBuffer: UInt64 = 0
    var stats = EpollStats()

    /// `epoll_event.data` of the waker's eventfd (sockets use their descriptor).
    static let wakeTag: UInt64 = 1 << 40

    /// `controlCapacity` must be the multishot header's, so the layout written
    /// here is the one `ReceiveMessageHeader.parseMultishot` reads.
    init(controlCapacity: Int, maxBatch: Int, backlogCapacity: Int) throws(URingError) {
        let e = curing_epoll_create()
        guard e >= 0 else { throw .socket(call: "epoll_create1", Errno(rawValue: -e)) }
        epoll = e
        fds = DescriptorTable(capacity: 1024)
        ready = CompletionQueue(capacity: max(maxBatch, backlogCapacity))
        pending = SubmissionBacklog(capacity: backlogCapacity)
        waiting = WaitingSends(capacity: 64)
        nameCapacity = MemoryLayout<sockaddr_storage>.size
        self.controlCapacity = controlCapacity
        batch = 64
        messages = .allocate(capacity: batch)
        vectors = .allocate(capacity: batch)
        taken = .allocate(capacity: batch)
        sendHeaders = .allocate(capacity: batch)
        sendTags = .allocate(capacity: batch)
        eventCapacity = 256
        eventData = .allocate(capacity: eventCapacity)
        eventFlags = .allocate(capacity: eventCapacity)
    }

    deinit {
        close(epoll)
        messages.deallocate()
        vectors.deallocate()
        taken.deallocate()
        sendHeaders.deallocate()
        sendTags.deallocate()
        eventData.deallocate()
        eventFlags.deallocate()
    }

    // MARK: The reactor's calls

    @inline(__always)
    mutating func submit(_ s: Submission) { pending.append(s) }

    var backlogCount: Int { pending.count }

    /// Performs every pending submission, in order.
    mutating func flush() {
        while let s = pending.first {
            pending.removeFirst()
            perform(s)
        }
    }

    /// Flushes, then waits for readiness (at most `timeout`; not at all when
    /// completions are already waiting to be reaped) and does the I/O each
    /// ready descriptor is armed for. epoll cannot wait for a number of
    /// completions, so `--batch-wait-us` has no effect here.
    mutating func wait(timeout: Duration, _ buffers: inout ReceiveBuffers) throws(URingError) {
        flush()
        var ms: Int32 = 0
        if ready.isEmpty {
            let (s, atto) = timeout.components
            // Round up: a 50 µs wait must not become a busy poll.
            let total = s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000
            ms = Int32(clamping: max(0, total))
        }
        let n = curing_epoll_wait(epoll, eventData, eventFlags, Int32(eventCapacity), ms)
        if n < 0 {
            if n == -EINTR { return }
            throw .enter(Errno(rawValue: -n))
        }
        // The wake-up first: epoll reports ready descriptors in no
        // particular order, and a control message (a drain, a reload) must
        // act before datagrams that arrived after it was sent, as it does
        // on io_uring, where its completion is posted first.
        for i in 0..<Int(n) where eventData[i] == Self.wakeTag {
            _ = read(wakeFD, &wakeBuffer, 8)
            ready.append(Completion(userData: UserData(kind: .wake, slot: 0), result: 8, flags: 0))
        }
        for i in 0..<Int(n) where eventData[i] != Self.wakeTag {
            handleReady(Int32(truncatingIfNeeded: eventData[i]), events: eventFlags[i], &buffers)
        }
    }

    /// Moves ready completions to `out`; returns how many.
    @inline(__always)
    mutating func reap(into out: UnsafeMutableBufferPointer<Completion>) -> Int { ready.take(into: out) }

    /// Watches `waker`'s eventfd; its readiness completes as `.wake`.
    mutating func watch(waker: Waker) throws(URingError) {
        wakeFD = waker.fileDescriptor
        let r = curing_epoll_ctl(epoll, 1, wakeFD, curing_epoll_in(), Self.wakeTag)
        guard r == 0 else { throw .eventfd(call: "epoll_ctl", Errno(rawValue: -r)) }
    }

    @inline(__always)
    mutating func complete(_ ud: UserData, _ result: Int32, flags: UInt32 = 0) {
        ready.append(Completion(userData: ud, result: result, flags: flags))
    }

    // MARK: Arming and cancelling

    private mutating func perform(_ s: Submission) {
        switch s {
        case .receiveMessage(let fd, let group, _, let ud):
            arm(fd, .datagram, ud: ud, group: group, multishot: true)
        case .streamReceive(let fd, let many, let ud):
            arm(fd, .stream, ud: ud, group: ReceiveBuffers.smallGroup, multishot: many)
        case .acceptMultishot(let fd, let ud):
            // accept4 must not block if another thread took the connection.
            _ = curing_set_nonblocking(fd)
            arm(fd, .accept, ud: ud, group: 0, multishot: true)
        case .connect(let fd, let address, let length, let ud):
            startConnect(fd, address: address, length: length, ud: ud)
        case .streamSend(let fd, _, _, _):
            streamSend(s, fd: fd)
        case .sendMessage(let fd, _, _):
            sendRun(first: s, fd: fd)
        case .cancel(let target):
            cancel(target)
        }
    }

    private mutating func arm(_ fd: Int32, _ kind: DescriptorTable.ReadKind, ud: UserData, group: UInt16, multishot: Bool)
    {
        fds.reserve(fd)
        // Another tag on this descriptor means another socket: the old one
        // was closed and its number reused (an allocation's relay socket, a
        // connection in a reused slot). Re-arming after ENOBUFS keeps the tag.
        if fds[fd].readUD != ud { forget(fd) }
        fds[fd].readKind = kind
        fds[fd].readUD = ud
        fds[fd].group = group
        fds[fd].multishot = multishot
        updateInterest(fd, force: true)
    }

    /// A descriptor number that now names another socket (or none): what
    /// was armed or waiting on the old socket ends as io_uring would end it
    /// (-ECANCELED), and epoll forgets it (it did on close; a reused number
    /// is registered again by its next arm). The parts close sockets
    /// themselves and cancel what was armed afterwards, so the reactor
    /// learns of a close here: at a cancel on a closed descriptor, at an
    /// accept or connect that reuses the number, or at an arm with a new tag.
    mutating func forget(_ fd: Int32) {
        guard Int(fd) < fds.capacity else { return }
        let old = fds[fd]
        if old.readKind != .none { complete(old.readUD, -ECANCELED) }
        if old.connecting { complete(old.connectUD, -ECANCELED) }
        if old.waitingSends > 0 {
            while let i = waiting.oldest(forDescriptor: fd) {
                complete(waiting[i].userData, -ECANCELED)
                waiting.remove(at: i)
            }
        }
        if old.interest != 0 { _ = curing_epoll_ctl(epoll, 2, fd, 0, 0) }
        fds[fd] = DescriptorTable.Entry()
    }

    /// Ends what is armed for reading on `fd`.
    mutating func disarmRead(_ fd: Int32) {
        fds[fd].readKind = .none
        updateInterest(fd)
    }

    private mutating func startConnect(
        _ fd: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, ud: UserData
    ) {
        // Connect is the first operation on a new socket.
        forget(fd)
        _ = curing_set_nonblocking(fd)
        if Glibc.connect(fd, address, length) == 0 {
            complete(ud, 0)
            return
        }
        let e = errno
        guard e == EINPROGRESS else {
            complete(ud, -e)
            return
        }
        fds.reserve(fd)
        fds[fd].connectUD = ud
        fds[fd].connecting = true
        updateInterest(fd, force: true)
    }

    /// Cancels the armed receive, accept or connect tagged `target`. A
    /// descriptor's table entry records its operations' tags, so this walks
    /// the table: cancels come with closing sockets, not with packets.
    private mutating func cancel(_ target: UserData) {
        for fd in 0..<Int32(fds.capacity) {
            if fds[fd].readKind != .none && fds[fd].readUD == target {
                disarmRead(fd)
                complete(target, -ECANCELED)
                // A connection's receive is cancelled when it closes; its
                // sends still waiting for EPOLLOUT would wait for ever (epoll
                // forgot the descriptor at close), so they end here too.
                if fcntl(fd, F_GETFD) < 0 && errno == EBADF { forget(fd) }
                return
            }
            if fds[fd].connecting && fds[fd].connectUD == target {
                fds[fd].connecting = false
                updateInterest(fd)
                complete(target, -ECANCELED)
                return
            }
        }
    }

    /// Keeps epoll's interest for `fd` equal to what is armed: EPOLLIN while
    /// a receive or accept is armed, EPOLLOUT while a connect or a refused
    /// send waits. A descriptor closed and reused shows up as ENOENT or
    /// EEXIST (epoll forgot it on close), handled by the other operation.
    mutating func updateInterest(_ fd: Int32, force: Bool = false) {
        var want: UInt32 = 0
        if fds[fd].readKind != .none { want |= curing_epoll_in() }
        if fds[fd].connecting || fds[fd].waitingSends > 0 { want |= curing_epoll_out() }
        let have = fds[fd].interest
        guard want != have || force else { return }
        let tag = UInt64(UInt32(bitPattern: fd))
        if want == 0 {
            _ = curing_epoll_ctl(epoll, 2, fd, 0, tag)  // DEL
        } else if have == 0 {
            if curing_epoll_ctl(epoll, 1, fd, want, tag) == -EEXIST { _ = curing_epoll_ctl(epoll, 3, fd, want, tag) }
        } else if curing_epoll_ctl(epoll, 3, fd, want, tag) == -ENOENT {
            _ = curing_epoll_ctl(epoll, 1, fd, want, tag)
        }
        fds[fd].interest = want
    }

    // MARK: Readiness

    private mutating func handleReady(_ fd: Int32, events: UInt32, _ buffers: inout ReceiveBuffers) {
        guard fd >= 0 && Int(fd) < fds.capacity else { return }
        let failed = events & (curing_epoll_err() | curing_epoll_hup()) != 0
        if events & curing_epoll_in() != 0 || failed {
            switch fds[fd].readKind {
            case .datagram: receiveDatagrams(fd, &buffers)
            case .stream: receiveStream(fd, &buffers)
            case .accept: acceptConnections(fd)
            case .none: break
            }
        }
        if events & curing_epoll_out() != 0 || failed {
            if fds[fd].connecting { finishConnect(fd) }
            if fds[fd].waitingSends > 0 { retryWaitingSends(fd) }
        }
    }

    private mutating func finishConnect(_ fd: Int32) {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0 { error = errno }
        fds[fd].connecting = false
        updateInterest(fd)
        complete(fds[fd].connectUD, error == 0 ? 0 : -error)
    }
}

/// What the epoll backend did that io_uring would not have had to
/// (tests read these; they say how often each fallback path ran).
struct EpollStats {
    /// `sendmmsg` calls that sent some of their datagrams and not all.
    var partialBatches = 0
    /// Sends a socket refused with EAGAIN (they waited for EPOLLOUT).
    var sendsDeferred = 0
    /// Receives ended for want of a free buffer (-ENOBUFS).
    var receivesOutOfBuffers = 0
}
