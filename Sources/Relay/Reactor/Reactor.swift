import Glibc
import STUN
import URing

/// The completion source a worker loops on, and its receive buffers. The
/// worker's parts never touch the backend; they hand the reactor
/// `Submission`s (arm a receive, send, accept, connect, cancel), and the
/// worker asks it to `flush`, `wait` and `reap` completions (`Completion`,
/// kinds from Worker/CompletionKind.swift) and reads received datagrams as
/// `Received`. Two backends implement those calls, chosen once at start
/// (`--backend`):
///
/// - `URingReactor`: one io_uring with provided-buffer rings; what a full
///   SQ cannot take waits in a backlog (URingReactor.swift).
/// - `EpollReactor`: epoll readiness turned into the same completions, with
///   recvmmsg/sendmmsg batches into and out of the same buffers, for hosts
///   that refuse io_uring (EpollReactor.swift).
///
/// The backend is a concrete enum of two pointers, not a protocol value:
/// each call is one predictable branch on a value that never changes, with
/// no dynamic dispatch, no reference counting and no allocation; each
/// backend's own code is specialised and inlined as before. The backends
/// live behind pointers because they are ~Copyable and a ~Copyable enum
/// payload cannot be mutated in place; the reactor owns them (allocated at
/// start, freed in deinit).
struct Reactor: ~Copyable {
    enum Backend {
        case ioUring(UnsafeMutablePointer<URingReactor>)
        case epoll(UnsafeMutablePointer<EpollReactor>)
    }

    let backend: Backend
    var buffers: ReceiveBuffers
    /// Receives stay armed after each datagram (multishot RECVMSG on 6.0+,
    /// and always on epoll) and put the recvmsg header in the buffer; the
    /// 5.19 io_uring path receives single-shot with a header per socket.
    let multishot: Bool
    /// The multishot buffer layout (both backends write it), for parsing.
    private let header: ReceiveMessageHeader
    /// Completions copied out for the worker's dispatch.
    let completions: UnsafeMutableBufferPointer<Completion>

    /// The io_uring backend. `datagramSockets`: how many sockets may have a
    /// single-shot receive armed at once (listeners plus relay slots);
    /// `backlogCapacity`: how many operations the backlog holds before it
    /// must grow.
    init(
        ring: consuming Ring, buffers: consuming ReceiveBuffers, multishot: Bool, datagramSockets: Int,
        maxBatch: Int, backlogCapacity: Int
    ) {
        let core = UnsafeMutablePointer<URingReactor>.allocate(capacity: 1)
        core.initialize(
            to: URingReactor(
                ring: ring, multishot: multishot, datagramSockets: datagramSockets, backlogCapacity: backlogCapacity))
        backend = .ioUring(core)
        self.buffers = buffers
        self.multishot = multishot
        header = ReceiveMessageHeader()
        completions = .allocate(capacity: maxBatch)
    }

    /// The epoll backend, with buffers made by
    /// `ReceiveBuffers(unregisteredSmallCount:...)`.
    init(epollWith buffers: consuming ReceiveBuffers, maxBatch: Int, backlogCapacity: Int) throws(URingError) {
        let h = ReceiveMessageHeader()
        let e = try EpollReactor(
            controlCapacity: h.controlCapacity, maxBatch: maxBatch, backlogCapacity: backlogCapacity)
        let core = UnsafeMutablePointer<EpollReactor>.allocate(capacity: 1)
        core.initialize(to: e)
        backend = .epoll(core)
        self.buffers = buffers
        multishot = true
        header = h
        completions = .allocate(capacity: maxBatch)
    }

    deinit {
        switch backend {
        case .ioUring(let r):
            r.deinitialize(count: 1)
            r.deallocate()
        case .epoll(let e):
            e.deinitialize(count: 1)
            e.deallocate()
        }
        completions.deallocate()
    }

    /// "io_uring" or "epoll" (logs, the `uturn_backend_info` metric).
    var backendName: String {
        switch backend {
        case .ioUring: "io_uring"
        case .epoll: "epoll"
        }
    }

    // MARK: Submitting

    /// Queues `s`. Never fails, never drops: io_uring keeps what a full SQ
    /// cannot take in its backlog; epoll performs it at the next flush.
    @inline(__always)
    mutating func submit(_ s: Submission) {
        switch backend {
        case .ioUring(let r): r.pointee.submit(s)
        case .epoll(let e): e.pointee.submit(s)
        }
    }

    /// Operations queued and not yet handed to the kernel.
    var backlogCount: Int {
        switch backend {
        case .ioUring(let r): r.pointee.backlogCount
        case .epoll(let e): e.pointee.backlogCount
        }
    }

    /// Times an operation found the SQ full (io_uring; 0 on epoll, which has none).
    var sqFullEvents: Int {
        switch backend {
        case .ioUring(let r): r.pointee.sqFullEvents
        case .epoll: 0
        }
    }

    /// Hands what was submitted to the kernel (io_uring: submits the SQ and
    /// the backlog; epoll: performs the operations).
    mutating func flush() {
        switch backend {
        case .ioUring(let r): r.pointee.flush()
        case .epoll(let e): e.pointee.flush()
        }
    }

    // MARK: Waiting and reaping

    /// Submits and sleeps until `minComplete` completions are ready (epoll:
    /// one) or `timeout` passes (or the waker fires).
    mutating func wait(minComplete: Int, timeout: Duration) throws(URingError) {
        switch backend {
        case .ioUring(let r): try r.pointee.wait(minComplete: minComplete, timeout: timeout)
        case .epoll(let e): try e.pointee.wait(timeout: timeout, &buffers)
        }
    }

    /// Copies up to `completions.count` ready completions out; returns how many.
    @inline(__always)
    mutating func reap() -> Int {
        switch backend {
        case .ioUring(let r): r.pointee.reap(into: completions)
        case .epoll(let e): e.pointee.reap(into: completions)
        }
    }

    mutating func makeWaker() throws(URingError) -> Waker {
        switch backend {
        case .ioUring(let r):
            return try r.pointee.makeWaker()
        case .epoll(let e):
            let w = try Waker()
            try e.pointee.watch(waker: w)
            return w
        }
    }

    // MARK: Received datagrams

    /// Where a receive's payload and source are, for buffer `h` holding
    /// `length` bytes. The multishot layout (both backends) puts ~200 bytes
    /// of recvmsg header, address and control before the payload.
    @inline(__always)
    func received(buffer h: UInt16, length: Int32, singleShotHeader index: Int) -> Received? {
        let base = buffers.base(h)
        guard multishot else {
            guard case .ioUring(let r) = backend else { return nil }
            return r.pointee.receivedSingleShot(base: base, size: buffers.size(h), length: length, index: index)
        }
        guard let message = header.parseMultishot(buffer: base, length: length) else { return nil }
        guard !message.isPayloadTruncated, message.payload.count > 0, let nameBase = message.name.baseAddress,
            let source = TransportAddress(sockaddr: nameBase, length: message.name.count)
        else { return nil }
        var segment = 0
        if h & ReceiveBuffers.largeFlag != 0, let s = message.groSegmentSize, s > 0, s < message.payload.count {
            segment = s
        }
        return Received(payload: message.payload, source: source, segmentSize: segment)
    }

    /// Room kept before the payload on the single-shot path: the largest
    /// Data-indication prefix (20 + 24 + 4 bytes), rounded up.
    static var singleShotHeadroom: Int { 64 }
}

/// What a datagram receive delivered: the payload (one datagram, or a GRO
/// train of `segmentSize`-byte datagrams), with room before it for a header.
struct Received {
    var payload: UnsafeMutableRawBufferPointer
    var source: TransportAddress
    /// 0 when the payload is one datagram.
    var segmentSize: Int

    /// The train's datagram starting at `offset` (the last may be shorter).
    @inline(__always)
    func datagram(at offset: Int) -> UnsafeMutableRawBufferPointer {
        let n = min(segmentSize, payload.count - offset)
        return UnsafeMutableRawBufferPointer(rebasing: payload[offset..<(offset + n)])
    }

    /// Datagrams in the train.
    var trainLength: Int { (payload.count + segmentSize - 1) / segmentSize }
}
