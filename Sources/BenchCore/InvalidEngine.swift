import CURing
import Foundation
import STUN
import URing

#if canImport(Glibc)
import Glibc
#endif

/// What `invalid` measured.
struct InvalidResult {
    /// Per source (one per kind), counted over packets sent in the window.
    var sent: [UInt64]
    var success: [UInt64]
    var errors: [[Int: UInt64]]
    var other: [UInt64]
    var junkSendErrors: UInt64 = 0
    /// The legitimate session.
    var legitSent: UInt64 = 0
    var legitReceived: UInt64 = 0
    var legitMalformed: UInt64 = 0
    var latency = LatencyHistogram()
    var perSecond: [Double] = []
    var cpu = CPUWindow(relayPID: nil)

    init(sources: Int) {
        sent = Array(repeating: 0, count: sources)
        success = sent
        other = sent
        errors = Array(repeating: [:], count: sources)
    }
}

/// The data path of `uturn-bench invalid`, on one io_uring: junk from one
/// socket per kind at a fixed total rate (kinds round-robin), one legitimate
/// session sending ChannelData to its bound peer at its own rate, multishot
/// RECVMSG on every socket. Each answer is counted for the kind whose socket
/// it came to; STUN answers carry our transaction ID, which says whether the
/// packet that provoked it was sent inside the window.
struct InvalidEngine {
    static let receiveKind = UserData.Kind(rawValue: 1)
    static let sendKind = UserData.Kind(rawValue: 2)
    static let cancelKind = UserData.Kind(rawValue: 3)
    /// Answers and echoes still counted this long after the last send.
    static let drainNanos: UInt64 = 500_000_000

    struct Source {
        var kind: InvalidKind
        var fd: Int32
    }

    let options: BenchOptions
    let server: SocketAddress
    var log: (String) -> Void

    func run(
        legit: TURNSession, sources: [Source], builder initial: InvalidPacketBuilder
    ) throws -> InvalidResult {
        var builder = initial
        let k = sources.count
        let legitIndex = k
        let fds = sources.map(\.fd) + [legit.socket.rawValue]
        let frameSize = ChannelData.headerSize + options.payload
        var ringOptions = RingOptions()
        ringOptions.submissionEntries = 1024
        ringOptions.completionEntries = 8192
        var ring = try Ring(options: ringOptions)
        var buffers = try BufferRing(ring: &ring, groupID: 0, count: 2048, bufferSize: 2048)
        let header = ReceiveMessageHeader()
        let slotCount = 2048
        let slotSize = InvalidPacketBuilder.maximumSize
        let slots = SendMessageSlots(count: slotCount, iovecsPerMessage: 1)
        let sendData = UnsafeMutableRawPointer.allocate(byteCount: slotCount * slotSize, alignment: 16)
        sendData.initializeMemory(as: UInt8.self, repeating: 0, count: slotCount * slotSize)
        defer { sendData.deallocate() }
        var freeSlots = [Int32]()
        freeSlots.reserveCapacity(slotCount)
        for s in (0..<slotCount).reversed() { freeSlots.append(Int32(s)) }
        // Per slot: the source it went out on (k: legit) and whether it was counted as sent in the window.
        var slotSource = [Int32](repeating: 0, count: slotCount)
        var slotCounted = [Bool](repeating: false, count: slotCount)
        let cqes = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 2048)
        defer { cqes.deallocate() }

        var rearm = [Bool](repeating: false, count: fds.count)
        for i in fds.indices {
            while !ring.prepareReceiveMessageMultishot(
                socket: fds[i], header: header, bufferGroup: 0,
                userData: UserData(kind: Self.receiveKind, slot: UInt32(i)))
            { _ = try ring.submit() }
        }
        _ = try ring.submit()

        var result = InvalidResult(sources: k)
        result.cpu = CPUWindow(relayPID: options.relayPID)
        let start = monotonicNanos()
        let windowStart = start + UInt64(options.warmup * 1e9)
        let windowEnd = windowStart + UInt64(options.duration * 1e9)
        let drainEnd = windowEnd + Self.drainNanos
        var nextTick = start + 1_000_000_000
        var tickIndex = 1
        var junkTotal: UInt64 = 0
        var legitTotal: UInt64 = 0
        var legitSeq: UInt64 = 0
        var second = (junk: UInt64(0), answers: UInt64(0), legitSent: UInt64(0), legitReceived: UInt64(0))
        var secondLatency = LatencyHistogram()
        let junkRate = Double(options.rate)
        let legitRate = Double(options.legitRate)

        while true {
            let now = monotonicNanos()
            if now >= drainEnd { break }

            if now >= nextTick {
                let inWindow = nextTick > windowStart && nextTick <= windowEnd + 1_000_000
                if nextTick - 1_000_000_000 >= windowStart && nextTick <= windowEnd + 1_000_000 {
                    result.perSecond.append(Double(second.legitReceived))
                }
                if !options.quiet {
                    let loss = BenchSummary.loss(sent: second.legitSent, received: second.legitReceived)
                    let p99 = Double(secondLatency.valueAtPercentile(99)) / 1000
                    let tag = nextTick <= windowStart ? " (warmup)" : (inWindow ? "" : " (drain)")
                    log(
                        "t=\(tickIndex) junk/s=\(second.junk) answers/s=\(second.answers) legit sent/s=\(second.legitSent) "
                            + "rt/s=\(second.legitReceived) loss=\(fmt2(loss))% p99=\(fmt2(p99))us\(tag)")
                }
                second = (0, 0, 0, 0)
                secondLatency.reset()
                nextTick += 1_000_000_000
                tickIndex += 1
            }
            if !result.cpu.started, now >= windowStart { result.cpu.start(now: now) }
            if now >= windowEnd { result.cpu.finish(now: now) }

            if now < windowEnd {
                let elapsed = Double(now - start) / 1e9
                let inWindow = now >= windowStart
                // The legitimate session first: it must not wait behind the junk.
                var legitWant = Int((elapsed * legitRate).rounded(.down)) + 1 - Int(legitTotal)
                while legitWant > 0, let slot = freeSlots.last, ring.submissionSpaceLeft > 0 {
                    freeSlots.removeLast()
                    let frame = sendData + Int(slot) * slotSize
                    ChannelData.writeHeader(channel: legit.channel, payloadLength: UInt16(options.payload), to: frame)
                    let stamp = monotonicNanos()
                    (frame + 4).storeBytes(of: legitSeq.littleEndian, toByteOffset: 0, as: UInt64.self)
                    (frame + 4).storeBytes(of: stamp.littleEndian, toByteOffset: 8, as: UInt64.self)
                    (frame + 4).storeBytes(of: UInt32(0).littleEndian, toByteOffset: 16, as: UInt32.self)
                    legitSeq &+= 1
                    send(slot: slot, length: frameSize, fd: legit.socket.rawValue, &ring, slots, sendData, slotSize)
                    slotSource[Int(slot)] = Int32(legitIndex)
                    slotCounted[Int(slot)] = stamp >= windowStart && stamp < windowEnd
                    if slotCounted[Int(slot)] { result.legitSent += 1 }
                    legitTotal += 1
                    second.legitSent += 1
                    legitWant -= 1
                }
                var junkWant = Int((elapsed * junkRate).rounded(.down)) + 1 - Int(junkTotal)
                while junkWant > 0, let slot = freeSlots.last, ring.submissionSpaceLeft > 0 {
                    freeSlots.removeLast()
                    let i = Int(junkTotal % UInt64(k))
                    let buffer = UnsafeMutableRawBufferPointer(start: sendData + Int(slot) * slotSize, count: slotSize)
                    let length = try builder.write(sources[i].kind, inWindow: inWindow, into: buffer)
                    send(slot: slot, length: length, fd: sources[i].fd, &ring, slots, sendData, slotSize)
                    slotSource[Int(slot)] = Int32(i)
                    slotCounted[Int(slot)] = inWindow
                    if inWindow { result.sent[i] += 1 }
                    junkTotal += 1
                    second.junk += 1
                    junkWant -= 1
                }
            }

            _ = try ring.submitAndWait(minComplete: 1, timeout: .nanoseconds(500_000))
            let n = ring.reapCompletions(into: cqes)
            let recvNow = monotonicNanos()
            for c in 0..<n {
                let cqe = cqes[c]
                switch cqe.userData.kind {
                case Self.receiveKind:
                    let i = Int(cqe.userData.slot)
                    if let id = cqe.bufferID {
                        if let msg = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result) {
                            let p = UnsafeRawBufferPointer(msg.payload)
                            if i == legitIndex {
                                if p.count >= 1, p[0] & 0xC0 == 0 {
                                    // A STUN message (a late response, an indication): not an echo.
                                } else if p.count == frameSize, !msg.isPayloadTruncated,
                                    UInt16(p[0]) << 8 | UInt16(p[1]) == legit.channel,
                                    Int(UInt16(p[2]) << 8 | UInt16(p[3])) == options.payload,
                                    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 20, as: UInt32.self)) == 0
                                {
                                    let stamp = UInt64(
                                        littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt64.self))
                                    let latency = recvNow &- stamp
                                    second.legitReceived += 1
                                    secondLatency.record(latency)
                                    if stamp >= windowStart && stamp < windowEnd {
                                        result.legitReceived += 1
                                        result.latency.record(latency)
                                    }
                                } else {
                                    result.legitMalformed += 1
                                }
                            } else {
                                second.answers += 1
                                count(answer: p, source: i, at: recvNow, windowStart: windowStart, &result, &builder)
                            }
                        }
                        buffers.recycle(id)
                    }
                    if !cqe.hasMore { rearm[i] = true }
                case Self.sendKind:
                    let slot = Int(cqe.userData.slot)
                    freeSlots.append(Int32(slot))
                    if cqe.result < 0 {
                        let source = Int(slotSource[slot])
                        if source == legitIndex {
                            if slotCounted[slot], result.legitSent > 0 { result.legitSent -= 1 }
                        } else {
                            result.junkSendErrors += 1
                            if slotCounted[slot], result.sent[source] > 0 { result.sent[source] -= 1 }
                        }
                    }
                default:
                    break
                }
            }
            buffers.publishRecycled()
            for i in fds.indices where rearm[i] {
                if ring.prepareReceiveMessageMultishot(
                    socket: fds[i], header: header, bufferGroup: 0,
                    userData: UserData(kind: Self.receiveKind, slot: UInt32(i)))
                {
                    rearm[i] = false
                }
            }
        }
        result.cpu.finish(now: monotonicNanos())
        // Cancel the receives so the sockets can be used (and closed) again, and let sends finish.
        for fd in fds { _ = ring.prepareCancel(fileDescriptor: fd, userData: UserData(kind: Self.cancelKind, slot: 0)) }
        _ = try? ring.submitAndWait(minComplete: 1, timeout: .milliseconds(50))
        _ = ring.reapCompletions(into: cqes)
        buffers.unregister(from: &ring)
        return result
    }

    private func send(
        slot: Int32, length: Int, fd: Int32, _ ring: inout Ring, _ slots: borrowing SendMessageSlots,
        _ data: UnsafeMutableRawPointer, _ slotSize: Int
    ) {
        slots.iovecs(Int(slot))[0] = iovec(iov_base: data + Int(slot) * slotSize, iov_len: length)
        let msg = slots.prepare(Int(slot), destination: server, iovecCount: 1)
        _ = ring.prepareSendMessage(
            socket: fd, message: msg, userData: UserData(kind: Self.sendKind, slot: UInt32(slot)))
    }

    /// Counts one datagram that came back on junk source `i`. A STUN answer
    /// whose transaction ID is ours says whether its request went out in the
    /// window; anything else counts when it arrives after the window opened.
    private func count(
        answer p: UnsafeRawBufferPointer, source i: Int, at now: UInt64, windowStart: UInt64,
        _ result: inout InvalidResult, _ builder: inout InvalidPacketBuilder
    ) {
        let inWindow = builder.decodeTag(p)?.inWindow ?? (now >= windowStart)
        guard inWindow else { return }
        // The class comes from the header alone, so an RFC 3489 answer (no
        // magic cookie, which STUNMessage refuses) still counts as what it is.
        guard p.count >= STUNHeader.size, p[0] & 0xC0 == 0 else {
            result.other[i] += 1
            return
        }
        let type = STUNMessageType(rawValue: UInt16(p[0]) << 8 | UInt16(p[1]))
        let m = try? STUNMessage(parsing: p)
        switch type.messageClass {
        case .successResponse:
            result.success[i] += 1
        case .errorResponse:
            let code = m?.errorCode?.code ?? 0
            result.errors[i][code, default: 0] += 1
            // A stale nonce: take the new one, so wrong-integrity keeps testing integrity.
            if code == 438, let nonce = m?.nonce, let realm = builder.realm ?? m?.realm {
                try? builder.setChallenge(realm: realm, nonce: nonce, password: options.password)
            }
        default:
            result.other[i] += 1
        }
    }
}
