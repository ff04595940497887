import Glibc
import STUN
import URing

/// The completion source a worker loops on: today one io_uring with its
/// provided receive buffers. The worker's parts never touch the ring; they
/// hand the reactor `Submission`s (arm a receive, send, accept, connect,
/// cancel), and the worker asks it to `flush` (submit), `wait` and `reap`.
///
/// One policy for a full submission queue, for every operation: what the SQ
/// cannot take goes to the backlog, in order, and is moved into the SQ at
/// the next flush before anything newer. So no caller retries, gives up, or
/// loses an operation because the ring was momentarily full; each time the
/// SQ is found full counts once in `sqFullEvents`.
///
/// This is the seam for a second backend (epoll, issue 13): another reactor
/// with the same calls (`submit`, `flush`, `wait`, `reap`, received
/// datagrams as `Received`) behind the same worker parts.
struct Reactor: ~Copyable {
    private var ring: Ring
    var buffers: ReceiveBuffers
    /// Multishot receives (6.0+) put the recvmsg header in the buffer; the
    /// 5.19 path receives single-shot with a header per socket.
    let multishot: Bool
    /// The msghdr template every multishot RECVMSG reads at submit time.
    private let header: ReceiveMessageHeader
    /// Single-shot path only: one header per socket that receives datagrams.
    private let singleShotHeaders: UnsafeMutablePointer<ReceiveMessageHeader>?
    private let singleShotHeaderCount: Int
    private var backlog: SubmissionBacklog
    /// Completions copied out of the CQ, walked by the worker's dispatch.
    let completions: UnsafeMutableBufferPointer<Completion>
    /// Times an operation found the SQ full (published as `sqFull`).
    private(set) var sqFullEvents = 0

    /// `datagramSockets`: how many sockets may have a single-shot receive
    /// armed at once (listeners plus relay slots); `backlogCapacity`: how
    /// many operations the backlog holds before it must grow.
    init(
        ring: consuming Ring, buffers: consuming ReceiveBuffers, multishot: Bool, datagramSockets: Int,
        maxBatch: Int, backlogCapacity: Int
    ) {
        self.ring = ring
        self.buffers = buffers
        self.multishot = multishot
        header = ReceiveMessageHeader()
        if multishot {
            singleShotHeaders = nil
            singleShotHeaderCount = 0
        } else {
            let headers = UnsafeMutablePointer<ReceiveMessageHeader>.allocate(capacity: datagramSockets)
            for i in 0..<datagramSockets { (headers + i).initialize(to: ReceiveMessageHeader(controlCapacity: 0)) }
            singleShotHeaders = headers
            singleShotHeaderCount = datagramSockets
        }
        backlog = SubmissionBacklog(capacity: backlogCapacity)
        completions = .allocate(capacity: maxBatch)
    }

    deinit {
        completions.deallocate()
        if let h = singleShotHeaders {
            h.deinitialize(count: singleShotHeaderCount)
            h.deallocate()
        }
    }

    // MARK: Submitting

    /// Queues `s`: into the SQ now, or (SQ full, or older operations still
    /// waiting) at the end of the backlog. Never fails, never drops.
    @inline(__always)
    mutating func submit(_ s: Submission) {
        if backlog.isEmpty && prepare(s) { return }
        if backlog.isEmpty { sqFullEvents += 1 }
        backlog.append(s)
    }

    /// Operations waiting in the backlog.
    var backlogCount: Int { backlog.count }

    /// Moves the backlog into the SQ and submits, until both are empty or
    /// the kernel takes nothing (its completion queue is backed up: the
    /// caller reaps, and the next flush goes on).
    mutating func flush() {
        while true {
            while let s = backlog.first, prepare(s) { backlog.removeFirst() }
            guard ring.pendingSubmissions > 0 else { return }
            let taken = (try? ring.submit()) ?? 0
            if taken == 0 || backlog.isEmpty { return }
        }
    }

    @inline(__always)
    private mutating func prepare(_ s: Submission) -> Bool {
        switch s {
        case .receiveMessage(let fd, let group, let index, let ud):
            if index < 0 {
                return ring.prepareReceiveMessageMultishot(socket: fd, header: header, bufferGroup: group, userData: ud)
            }
            return ring.prepareReceiveMessage(
                socket: fd, header: singleShotHeaders![Int(index)], bufferGroup: group, userData: ud)
        case .streamReceive(let fd, let many, let ud):
            return ring.prepareStreamReceive(
                socket: fd, bufferGroup: ReceiveBuffers.smallGroup, multishot: many, userData: ud)
        case .sendMessage(let fd, let message, let ud):
            return ring.prepareSendMessage(socket: fd, message: message, userData: ud)
        case .streamSend(let fd, let bytes, let count, let ud):
            return ring.prepareStreamSend(socket: fd, bytes: bytes, count: count, userData: ud)
        case .acceptMultishot(let fd, let ud):
            return ring.prepareAcceptMultishot(socket: fd, userData: ud)
        case .connect(let fd, let address, let length, let ud):
            return ring.prepareConnect(socket: fd, address: address, length: length, userData: ud)
        case .cancel(let target):
            return ring.prepareCancel(target: target, userData: .housekeeping)
        }
    }

    // MARK: Waiting and reaping

    /// Submits and sleeps until `minComplete` completions are ready or
    /// `timeout` passes (or the waker fires). With a backlog it does not
    /// sleep: the backlog moves on as soon as completions free the CQ.
    mutating func wait(minComplete: Int, timeout: Duration) throws(URingError) {
        _ = try ring.submitAndWait(minComplete: minComplete, timeout: backlog.isEmpty ? timeout : .zero)
    }

    /// Copies up to `completions.count` ready completions out; returns how many.
    @inline(__always)
    mutating func reap() -> Int { ring.reapCompletions(into: completions) }

    mutating func makeWaker() throws(URingError) -> Waker { try ring.makeWaker() }

    // MARK: Received datagrams

    /// Where a receive's payload and source are, for buffer `h` holding
    /// `length` bytes. Multishot puts ~200 bytes of recvmsg header, address
    /// and control before the payload; the single-shot path puts the payload
    /// at offset 0, so it is moved up by `singleShotHeadroom` (the 5.19 path
    /// pays one memmove) to leave the same room for a header in place.
    @inline(__always)
    func received(buffer h: UInt16, length: Int32, singleShotHeader index: Int) -> Received? {
        let base = buffers.base(h)
        let message: ReceivedMessage
        if multishot {
            guard let m = header.parseMultishot(buffer: base, length: length) else { return nil }
            message = m
        } else {
            message = singleShotHeaders![index].parseSingleShot(buffer: base, length: length)
        }
        guard !message.isPayloadTruncated, message.payload.count > 0, let nameBase = message.name.baseAddress,
            let source = TransportAddress(sockaddr: nameBase, length: message.name.count)
        else { return nil }
        if multishot {
            var segment = 0
            if h & ReceiveBuffers.largeFlag != 0, let s = message.groSegmentSize, s > 0, s < message.payload.count {
                segment = s
            }
            return Received(payload: message.payload, source: source, segmentSize: segment)
        }
        let n = message.payload.count
        guard n + Self.singleShotHeadroom <= buffers.size(h) else { return nil }
        (base + Self.singleShotHeadroom).copyMemory(from: base, byteCount: n)
        return Received(
            payload: UnsafeMutableRawBufferPointer(start: base + Self.singleShotHeadroom, count: n), source: source,
            segmentSize: 0)
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
