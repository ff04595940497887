import CURing
import Foundation
import STUN
import URing

#if canImport(Glibc)
import Glibc
#endif

@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// What the data path measured.
struct TrafficResult {
    var sent: UInt64 = 0
    var received: UInt64 = 0
    var malformed: UInt64 = 0
    var control: UInt64 = 0
    var sendErrors: UInt64 = 0
    var latency = LatencyHistogram()
    var perSecond: [Double] = []
    var cpu = CPUWindow(relayPID: nil)
    var windowSeconds: Double = 0
}

/// The client data path on one io_uring: multishot RECVMSG on every session
/// socket from one provided-buffer ring, SENDMSG per ChannelData datagram (or,
/// with --gso N, per train of up to N equal frames cut by the kernel with
/// UDP_SEGMENT), all sends of a loop iteration submitted together. With
/// --gro the session sockets set UDP_GRO and a receive may hold a train of
/// frames, walked by its segment size; each frame is one round trip.
struct TrafficEngine {
    static let receiveKind = UserData.Kind(rawValue: 1)
    static let sendKind = UserData.Kind(rawValue: 2)

    struct Session {
        var fd: Int32
        var channel: UInt16
        var inFlight = 0
        var sentTotal: UInt64 = 0
        var lastProgress: UInt64 = 0
        var rearm = false
    }

    let options: BenchOptions
    let server: SocketAddress
    var log: (String) -> Void

    func run(sessions control: [TURNSession]) throws -> TrafficResult {
        var sessions = control.map { Session(fd: $0.socket.rawValue, channel: $0.channel) }
        let m = sessions.count
        let frameSize = ChannelData.headerSize + options.payload
        var ringOptions = RingOptions()
        ringOptions.submissionEntries = 1024
        ringOptions.completionEntries = 16384
        var ring = try Ring(options: ringOptions)
        // A GRO receive holds up to 64 KiB of frames (plus the multishot header in front).
        var buffers = try BufferRing(
            ring: &ring, groupID: 0, count: options.gro ? 512 : 4096, bufferSize: options.gro ? 69632 : 2048)
        let header = ReceiveMessageHeader()
        if options.gro { for s in control { try s.socket.setUDPGRO(true) } }
        // A send slot holds one datagram, or one train of up to `train` frames.
        let train = max(1, options.gso)
        let slotBytes = train * frameSize
        let wanted = options.mode == .flood ? (options.window * m + train - 1) / train * 2 : 4096
        let slotCount = max(64, min(8192, wanted, (64 << 20) / slotBytes))
        let slots = SendMessageSlots(count: slotCount, iovecsPerMessage: 1)
        let sendData = UnsafeMutableRawPointer.allocate(byteCount: slotCount * slotBytes, alignment: 16)
        sendData.initializeMemory(as: UInt8.self, repeating: 0xA5, count: slotCount * slotBytes)
        defer { sendData.deallocate() }
        var slotFrames = [Int32](repeating: 0, count: slotCount)
        var freeSlots = [Int32]()
        freeSlots.reserveCapacity(slotCount)
        for s in (0..<slotCount).reversed() { freeSlots.append(Int32(s)) }
        var slotSession = [Int32](repeating: 0, count: slotCount)
        var slotStamp = [UInt64](repeating: 0, count: slotCount)
        let cqes = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 2048)
        defer { cqes.deallocate() }

        for i in 0..<m {
            while !ring.prepareReceiveMessageMultishot(
                socket: sessions[i].fd, header: header, bufferGroup: 0,
                userData: UserData(kind: Self.receiveKind, slot: UInt32(i)))
            { _ = try ring.submit() }
        }
        _ = try ring.submit()

        var result = TrafficResult()
        var seq: UInt64 = 0
        let start = monotonicNanos()
        let warmupNs = UInt64(options.warmup * 1e9)
        let windowStart = start + warmupNs
        let windowEnd = windowStart + UInt64(options.duration * 1e9)
        let drainEnd = windowEnd + 300_000_000
        var nextTick = start + 1_000_000_000
        var tickIndex = 1
        var secondReceived: UInt64 = 0
        var secondSent: UInt64 = 0
        var secondLatency = LatencyHistogram()
        result.cpu = CPUWindow(relayPID: options.relayPID)
        let stallNs: UInt64 = 200_000_000
        let ratePerSession = Double(options.rate)
        var rearmList = [Int]()
        var startCursor = 0
        // --count: sessions that sent all theirs, and when the last packet went.
        var sessionsDone = 0
        var lastSend = start

        while true {
            let now = monotonicNanos()
            if now >= drainEnd { break }
            if options.count != nil, sessionsDone == m,
                result.received >= result.sent || now &- lastSend > 1_000_000_000
            {
                break
            }
            let sending = now < windowEnd

            // Per-second progress.
            if now >= nextTick {
                let inWindow = nextTick > windowStart && nextTick <= windowEnd + 1_000_000
                if nextTick - 1_000_000_000 >= windowStart && nextTick <= windowEnd + 1_000_000 {
                    result.perSecond.append(Double(secondReceived))
                }
                if !options.quiet {
                    let loss = BenchSummary.loss(sent: secondSent, received: secondReceived)
                    let p50 = Double(secondLatency.valueAtPercentile(50)) / 1000
                    let p99 = Double(secondLatency.valueAtPercentile(99)) / 1000
                    let tag = nextTick <= windowStart ? " (warmup)" : (inWindow ? "" : " (drain)")
                    log(
                        "t=\(tickIndex) rt/s=\(secondReceived) sent/s=\(secondSent) loss=\(fmt2(loss))% p50=\(fmt2(p50))us p99=\(fmt2(p99))us\(tag)"
                    )
                }
                secondReceived = 0
                secondSent = 0
                secondLatency.reset()
                nextTick += 1_000_000_000
                tickIndex += 1
            }
            if !result.cpu.started, now >= windowStart { result.cpu.start(now: now) }
            if now >= windowEnd { result.cpu.finish(now: now) }

            // Sends: rotate the starting session so no one starves when slots run out.
            if sending {
                let elapsed = Double(now - start) / 1e9
                var k = 0
                while k < m, !freeSlots.isEmpty, ring.submissionSpaceLeft > 0 {
                    let i = (startCursor + k) % m
                    k += 1
                    var want: Int
                    switch options.mode {
                    case .flood:
                        if sessions[i].inFlight >= options.window, now &- sessions[i].lastProgress > stallNs {
                            sessions[i].inFlight = 0  // the rest are lost
                            sessions[i].lastProgress = now
                        }
                        want = options.window - sessions[i].inFlight
                    case .rate:
                        // Session i runs i/m of a packet interval behind session 0, so m
                        // sessions at r packets/s make an even stream, not m-packet bursts.
                        want =
                            Int((elapsed * ratePerSession - Double(i) / Double(m)).rounded(.down)) + 1
                            - Int(sessions[i].sentTotal)
                    case .alloc, .invalid:
                        want = 0
                    }
                    if let count = options.count { want = min(want, count - Int(sessions[i].sentTotal)) }
                    while want > 0, let slot = freeSlots.last, ring.submissionSpaceLeft > 0 {
                        freeSlots.removeLast()
                        let frames = min(want, train)
                        let base = sendData + Int(slot) * slotBytes
                        let stamp = monotonicNanos()
                        for f in 0..<frames {
                            let frame = base + f * frameSize
                            ChannelData.writeHeader(
                                channel: sessions[i].channel, payloadLength: UInt16(options.payload), to: frame)
                            (frame + 4).storeBytes(of: seq.littleEndian, toByteOffset: 0, as: UInt64.self)
                            (frame + 4).storeBytes(of: stamp.littleEndian, toByteOffset: 8, as: UInt64.self)
                            (frame + 4).storeBytes(of: UInt32(i).littleEndian, toByteOffset: 16, as: UInt32.self)
                            seq &+= 1
                        }
                        slots.iovecs(Int(slot))[0] = iovec(iov_base: base, iov_len: frames * frameSize)
                        let msg = slots.prepare(
                            Int(slot), destination: server, iovecCount: 1,
                            segmentSize: frames > 1 ? UInt16(frameSize) : nil)
                        _ = ring.prepareSendMessage(
                            socket: sessions[i].fd, message: msg,
                            userData: UserData(kind: Self.sendKind, slot: UInt32(slot)))
                        slotSession[Int(slot)] = Int32(i)
                        slotStamp[Int(slot)] = stamp
                        slotFrames[Int(slot)] = Int32(frames)
                        if sessions[i].inFlight == 0 { sessions[i].lastProgress = stamp }
                        sessions[i].inFlight += frames
                        sessions[i].sentTotal += UInt64(frames)
                        if let count = options.count, sessions[i].sentTotal == count { sessionsDone += 1 }
                        lastSend = stamp
                        if stamp >= windowStart && stamp < windowEnd { result.sent += UInt64(frames) }
                        secondSent += UInt64(frames)
                        want -= frames
                    }
                }
                startCursor = (startCursor + 1) % m
            }

            let waitNs: UInt64
            switch options.mode {
            case .rate: waitNs = 500_000
            default: waitNs = 10_000_000
            }
            _ = try ring.submitAndWait(minComplete: 1, timeout: .nanoseconds(Int64(waitNs)))
            let n = ring.reapCompletions(into: cqes)
            let recvNow = monotonicNanos()
            for c in 0..<n {
                let cqe = cqes[c]
                switch cqe.userData.kind {
                case Self.receiveKind:
                    let i = Int(cqe.userData.slot)
                    if let id = cqe.bufferID {
                        if let msg = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result) {
                            let all = UnsafeRawBufferPointer(msg.payload)
                            // Without a UDP_GRO cmsg the payload is one datagram.
                            let segment = options.gro ? (msg.groSegmentSize ?? all.count) : all.count
                            var offset = 0
                            while offset < all.count {
                                let p = UnsafeRawBufferPointer(
                                    rebasing: all[offset..<min(all.count, offset + max(1, segment))])
                                offset += max(1, segment)
                                if p.count >= 1, p[0] & 0xC0 == 0 {
                                    result.control += 1  // a STUN message (late response, indication)
                                } else if p.count == frameSize, !msg.isPayloadTruncated,
                                    UInt16(p[0]) << 8 | UInt16(p[1]) == sessions[i].channel,
                                    Int(UInt16(p[2]) << 8 | UInt16(p[3])) == options.payload,
                                    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
                                        == UInt32(i)
                                {
                                    let stamp = UInt64(
                                        littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt64.self))
                                    let latency = recvNow &- stamp
                                    if sessions[i].inFlight > 0 { sessions[i].inFlight -= 1 }
                                    sessions[i].lastProgress = recvNow
                                    secondReceived += 1
                                    secondLatency.record(latency)
                                    if stamp >= windowStart && stamp < windowEnd {
                                        result.received += 1
                                        result.latency.record(latency)
                                    }
                                } else {
                                    result.malformed += 1
                                }
                            }
                        }
                        buffers.recycle(id)
                    }
                    if !cqe.hasMore {
                        sessions[i].rearm = true
                        rearmList.append(i)
                    }
                case Self.sendKind:
                    let slot = Int(cqe.userData.slot)
                    freeSlots.append(Int32(slot))
                    if cqe.result < 0 {
                        let frames = Int(slotFrames[slot])
                        result.sendErrors += UInt64(frames)
                        let i = Int(slotSession[slot])
                        sessions[i].inFlight = max(0, sessions[i].inFlight - frames)
                        if slotStamp[slot] >= windowStart && slotStamp[slot] < windowEnd {
                            result.sent -= min(result.sent, UInt64(frames))
                        }
                    }
                default:
                    break
                }
            }
            buffers.publishRecycled()
            for i in rearmList where sessions[i].rearm {
                if ring.prepareReceiveMessageMultishot(
                    socket: sessions[i].fd, header: header, bufferGroup: 0,
                    userData: UserData(kind: Self.receiveKind, slot: UInt32(i)))
                {
                    sessions[i].rearm = false
                }
            }
            rearmList.removeAll(where: { !sessions[$0].rearm })
        }
        result.cpu.finish(now: monotonicNanos())
        // Cancel the receives so the sockets can be closed cleanly, and let in-flight sends finish.
        for i in 0..<m {
            _ = ring.prepareCancel(
                fileDescriptor: sessions[i].fd, userData: UserData(kind: .init(rawValue: 3), slot: 0))
        }
        _ = try? ring.submitAndWait(minComplete: 1, timeout: .milliseconds(50))
        _ = ring.reapCompletions(into: cqes)
        buffers.unregister(from: &ring)
        result.windowSeconds =
            options.count != nil ? Double(min(monotonicNanos(), windowEnd) - windowStart) / 1e9 : options.duration
        return result
    }
}

func fmt2(_ v: Double) -> String {
    String(format: "%.1f", v)
}
