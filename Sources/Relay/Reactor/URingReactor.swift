import Glibc
import STUN
import URing

/// The io_uring backend of `Reactor`: one ring, the headers its RECVMSGs
/// read, and the backlog that holds what a full SQ cannot take.
///
/// One policy for a full submission queue, for every operation: what the SQ
/// cannot take goes to the backlog, in order, and is moved into the SQ at
/// the next flush before anything newer. So no caller retries, gives up, or
/// loses an operation because the ring was momentarily full; each time the
/// SQ is found full counts once in `sqFullEvents`.
struct URingReactor: ~Copyable {
    private var ring: Ring
    let multishot: Bool
    /// The msghdr template every multishot RECVMSG reads at submit time.
    private let header: ReceiveMessageHeader
    /// Single-shot path only: one header per socket that receives datagrams.
    let singleShotHeaders: UnsafeMutablePointer<ReceiveMessageHeader>?
    private let singleShotHeaderCount: Int
    private var backlog: SubmissionBacklog
    /// Times an operation found the SQ full (published as `sqFull`).
    private(set) var sqFullEvents = 0

    /// `datagramSockets`: how many sockets may have a single-shot receive
    /// armed at once (listeners plus relay slots); `backlogCapacity`: how
    /// many operations the backlog holds before it must grow.
    init(
        ring: consuming Ring, multishot: Bool, datagramSockets: Int, backlogCapacity: Int
    ) {
        self.ring = ring
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
    }

    deinit {
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

    /// Copies up to `out.count` ready completions out; returns how many.
    @inline(__always)
    mutating func reap(into out: UnsafeMutableBufferPointer<Completion>) -> Int { ring.reapCompletions(into: out) }

    mutating func makeWaker() throws(URingError) -> Waker { try ring.makeWaker() }

    /// The 5.19 path: the payload is at offset 0 of the buffer and the
    /// source in the socket's header; the payload is moved up by
    /// `Reactor.singleShotHeadroom` (one memmove) to leave the same room for
    /// a header in place as the multishot layout does.
    func receivedSingleShot(base: UnsafeMutableRawPointer, size: Int, length: Int32, index: Int) -> Received? {
        let message = singleShotHeaders![index].parseSingleShot(buffer: base, length: length)
        guard !message.isPayloadTruncated, message.payload.count > 0, let nameBase = message.name.baseAddress,
            let source = TransportAddress(sockaddr: nameBase, length: message.name.count)
        else { return nil }
        let n = message.payload.count
        guard n + Reactor.singleShotHeadroom <= size else { return nil }
        (base + Reactor.singleShotHeadroom).copyMemory(from: base, byteCount: n)
        return Received(
            payload: UnsafeMutableRawBufferPointer(start: base + Reactor.singleShotHeadroom, count: n), source: source,
            segmentSize: 0)
    }
}
