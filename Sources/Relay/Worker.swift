import Glibc
import STUN
import TURN
import URing

/// One worker: a thread that owns an io_uring, a provided buffer ring, one
/// listener socket per listening address (SO_REUSEPORT, so the kernel hashes
/// each client 5-tuple to one worker for life), the relay sockets of its
/// allocations, and its TURN tables. Nothing here is shared with other
/// workers, so the packet path takes no lock.
///
/// The loop: wait for completions (at most until the next 1 s tick), copy
/// them out, dispatch each (receive → route → queue a send; send done →
/// recycle its buffers), then flush the queued sends as GSO batches, hand
/// recycled buffers back, re-arm receives that ended, and submit — one
/// `io_uring_enter` per batch.
///
/// Per packet: no heap allocation, no reference counting, no lock. The
/// worker is a ~Copyable struct living on its thread's stack; its tables are
/// preallocated; classes (the control block, the waker) are touched only on
/// wake-ups and ticks.
struct Worker: ~Copyable {
    struct Listener {
        var fd: Int32
        var local: TransportAddress
    }

    let index: Int
    let control: WorkerControl
    let log: EngineLog
    var ring: Ring
    var buffers: BufferRing
    let header: ReceiveMessageHeader
    /// Single-shot (5.19) path only: one header per listener and relay slot.
    let singleShotHeaders: UnsafeMutablePointer<ReceiveMessageHeader>?
    let singleShotHeaderCount: Int
    var batcher: SendBatcher
    var turn: TURNServer
    var relays: RelaySockets
    var counters = WorkerCounters()
    let listeners: UnsafeMutableBufferPointer<Listener>
    let completions: UnsafeMutableBufferPointer<Completion>
    /// Listener slots whose receive ended and must be re-armed.
    let rearmListeners: UnsafeMutablePointer<Bool>
    /// Relay slots whose receive ended (slot, generation) awaiting re-arm.
    var rearmRelays: [UserData] = []
    var pendingRearm = false
    /// Response scratch for the control path (a STUN response fits in 548 bytes).
    let response: UnsafeMutableRawBufferPointer
    let multishot: Bool
    var gsoEnabled: Bool
    var buffersOut = 0
    var transactionCounter: UInt64
    var nextTick: UInt64 = 0
    var stopping = false
    /// Draining: new Allocate requests get 508; stop when no allocation is left.
    var draining = false

    static let groupID: UInt16 = 0

    init(
        index: Int, config: EngineConfig, turnConfig: TURNConfiguration, quotas: AllocationQuotas,
        control: WorkerControl, log: @escaping EngineLog
    ) throws(EngineError) {
        var options = RingOptions()
        options.submissionEntries = config.sqEntries
        options.completionEntries = config.cqEntries
        if config.noDeferTaskrun { options.highestRung = .singleIssuerCoopTaskrun }
        if config.noSingleIssuer { options.highestRung = .coopTaskrun }
        options.allowMultishotReceive = !config.singleShotReceive
        if config.simulateRingFailure {
            throw EngineError(
                "io_uring unavailable (simulated by --simulate-io-uring-failure): "
                    + URingError.explainUnavailable(.notPermitted))
        }
        var ring: Ring
        do { ring = try Ring(options: options) } catch {
            throw EngineError("worker \(index): cannot set up io_uring: \(error)")
        }
        let features: KernelFeatures
        do { features = try KernelFeatures.probe(options: options) } catch {
            throw EngineError("worker \(index): io_uring probe failed: \(error)")
        }
        let buffers: BufferRing
        do {
            buffers = try BufferRing(ring: &ring, groupID: Self.groupID, count: config.buffers, bufferSize: config.bufferSize)
        } catch {
            throw EngineError("worker \(index): cannot register \(config.buffers) receive buffers of \(config.bufferSize) bytes: \(error). \(error.explanation)")
        }
        let waker: Waker
        do { waker = try ring.makeWaker() } catch { throw EngineError("worker \(index): eventfd: \(error)") }
        // Listeners: each worker binds every listening address with SO_REUSEPORT.
        // (All throwing work happens before any stored property is set.)
        let boundListeners = UnsafeMutableBufferPointer<Listener>.allocate(capacity: config.listen.count)
        for (i, address) in config.listen.enumerated() {
            do {
                let s = try UDPSocket.bound(to: SocketAddress(address), reusePort: true)
                boundListeners.initializeElement(at: i, to: Listener(fd: s.rawValue, local: address))
            } catch {
                for j in 0..<i { close(boundListeners[j].fd) }
                boundListeners.deallocate()
                throw EngineError("worker \(index): cannot listen on udp \(address): \(error)")
            }
        }
        control.waker.withLock { $0 = waker }
        self.index = index
        self.control = control
        self.log = log
        multishot = features.useMultishotReceive
        self.ring = ring
        self.buffers = buffers
        header = ReceiveMessageHeader()
        gsoEnabled = config.gso
        batcher = SendBatcher(capacity: config.sendOperations, gso: config.gso)
        turn = TURNServer(configuration: turnConfig, quotas: quotas, now: Self.monotonicNow())
        let relayCapacity = turnConfig.limits.maxAllocations * 2
        let slice = PortRange.slice(min: config.minPort, max: config.maxPort, workers: config.workers, index: index)
        relays = RelaySockets(capacity: relayCapacity, ports: slice, config: config, workerIndex: index)
        response = .allocate(byteCount: 2048, alignment: 8)
        completions = .allocate(capacity: config.maxBatch)
        rearmRelays.reserveCapacity(relayCapacity)
        transactionCounter = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15

        listeners = boundListeners
        rearmListeners = .allocate(capacity: config.listen.count)
        rearmListeners.initialize(repeating: false, count: config.listen.count)
        if multishot {
            singleShotHeaders = nil
            singleShotHeaderCount = 0
        } else {
            let n = config.listen.count + relayCapacity
            let headers = UnsafeMutablePointer<ReceiveMessageHeader>.allocate(capacity: n)
            for i in 0..<n { (headers + i).initialize(to: ReceiveMessageHeader(controlCapacity: 0)) }
            singleShotHeaders = headers
            singleShotHeaderCount = n
        }
        if index == 0 { log(.info, "io_uring: \(features)") }
    }

    deinit {
        for i in 0..<listeners.count { close(listeners[i].fd) }
        listeners.deallocate()
        rearmListeners.deallocate()
        completions.deallocate()
        response.deallocate()
        if let h = singleShotHeaders {
            h.deinitialize(count: singleShotHeaderCount)
            h.deallocate()
        }
    }

    static func monotonicNow() -> MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    // MARK: The loop

    mutating func run() {
        for i in 0..<listeners.count { armListener(i) }
        flushSubmissions()
        var now = Self.monotonicNow()
        nextTick = now.nanoseconds + 1_000_000_000
        while !stopping {
            let wait = Duration.nanoseconds(Int64(nextTick &- min(nextTick, now.nanoseconds)))
            do { _ = try ring.submitAndWait(minComplete: 1, timeout: wait) } catch {
                log(.error, "worker \(index): io_uring_enter failed: \(error)")
                break
            }
            now = Self.monotonicNow()
            // Drain what is ready, a bounded batch at a time, so sends are
            // flushed at least every `maxBatch` completions.
            while true {
                let n = ring.reapCompletions(into: completions)
                if n == 0 { break }
                counters.add(.completions, n)
                counters.add(.batches)
                for i in 0..<n { dispatch(completions[i], now: now) }
                finishBatch()
                if n < completions.count { break }
            }
            if now.nanoseconds >= nextTick {
                tick(now: now)
                nextTick = now.nanoseconds + 1_000_000_000
            }
        }
        shutdown()
    }

    /// End of a CQE batch: flush sends as GSO groups, give recycled buffers
    /// back to the kernel, re-arm receives that ended, submit.
    @inline(__always)
    mutating func finishBatch() {
        flushSends()
        buffers.publishRecycled()
        if pendingRearm { rearmReceives() }
        flushSubmissions()
    }

    @inline(__always)
    mutating func flushSubmissions() {
        if ring.pendingSubmissions > 0 { _ = try? ring.submit() }
    }

    // MARK: Dispatch

    @inline(never)
    mutating func dispatch(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        switch ud.kind {
        case .listenerReceive:
            if let id = cqe.bufferID {
                buffersOut += 1
                if cqe.result > 0 {
                    fromClient(listener: Int(ud.slot), buffer: id, length: cqe.result, now: now)
                } else {
                    recycle(id)
                }
            }
            if !multishot || !cqe.hasMore { receiveEnded(cqe, listener: Int(ud.slot)) }
        case .relayReceive:
            let live = relays.live(slot: ud.slot, generation: ud.generation)
            if let id = cqe.bufferID {
                buffersOut += 1
                if cqe.result > 0, let s = live {
                    fromPeer(relaySlot: Int(ud.slot), socket: s, buffer: id, length: cqe.result, now: now)
                } else {
                    recycle(id)
                }
            }
            if live != nil && (!multishot || !cqe.hasMore) {
                if cqe.result == -ENOBUFS { counters.add(.enobufs) }
                rearmRelays.append(ud)
                pendingRearm = true
            }
        case .send:
            sendCompleted(op: ud.slot, result: cqe.result)
        case .wake:
            checkStopRequest(now: now)
        default:
            break
        }
    }

    @inline(__always)
    mutating func recycle(_ id: UInt16) {
        buffers.recycle(id)
        buffersOut -= 1
    }

    mutating func receiveEnded(_ cqe: Completion, listener: Int) {
        if cqe.result == -ENOBUFS { counters.add(.enobufs) }
        rearmListeners[listener] = true
        pendingRearm = true
    }

    /// The payload of a received datagram, with room before it for a header.
    /// Multishot puts ~200 bytes of recvmsg header, address and control before
    /// the payload; the single-shot path puts the payload at offset 0, so it
    /// is moved up by `singleShotHeadroom` (the 5.19 path pays one memmove).
    @inline(__always)
    func received(buffer id: UInt16, length: Int32, header h: borrowing ReceiveMessageHeader)
        -> (payload: UnsafeMutableRawBufferPointer, source: TransportAddress)?
    {
        let base = buffers.buffer(id)
        let message: ReceivedMessage
        if multishot {
            guard let m = h.parseMultishot(buffer: base, length: length) else { return nil }
            message = m
        } else {
            message = h.parseSingleShot(buffer: base, length: length)
        }
        guard !message.isPayloadTruncated, let nameBase = message.name.baseAddress,
            let source = TransportAddress(sockaddr: nameBase, length: message.name.count)
        else { return nil }
        if multishot { return (message.payload, source) }
        let n = message.payload.count
        guard n + Self.singleShotHeadroom <= buffers.bufferSize else { return nil }
        (base + Self.singleShotHeadroom).copyMemory(from: base, byteCount: n)
        return (UnsafeMutableRawBufferPointer(start: base + Self.singleShotHeadroom, count: n), source)
    }

    /// Room kept before the payload on the single-shot path: the largest
    /// Data-indication prefix (20 + 24 + 4 bytes), rounded up.
    static let singleShotHeadroom = 64

    // MARK: Client → relay

    @inline(__always)
    mutating func fromClient(listener li: Int, buffer id: UInt16, length: Int32, now: MonotonicTime) {
        let got: (payload: UnsafeMutableRawBufferPointer, source: TransportAddress)?
        if multishot {
            got = received(buffer: id, length: length, header: header)
        } else {
            got = received(buffer: id, length: length, header: singleShotHeaders![li])
        }
        guard let (payload, source) = got, payload.count > 0 else {
            counters.add(.dropsTruncated)
            recycle(id)
            return
        }
        let listener = listeners[li]
        counters.add(.packetsFromClients)
        counters.add(.bytesFromClients, payload.count)
        let fiveTuple = FiveTuple(client: source, server: listener.local, transport: .udp)
        switch PacketKind(classifying: UnsafeRawBufferPointer(payload)) {
        case .channelData:
            forwardChannelData(payload, fiveTuple: fiveTuple, buffer: id, now: now)
        case .stun:
            handleSTUN(payload, fiveTuple: fiveTuple, listenerFD: listener.fd, buffer: id, now: now)
        default:
            counters.add(.dropsMalformed)
            recycle(id)
        }
    }

    @inline(__always)
    mutating func forwardChannelData(
        _ payload: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, buffer id: UInt16, now: MonotonicTime
    ) {
        let frame: ChannelData
        do throws(STUNError) {
            frame = try ChannelData(parsing: UnsafeRawBufferPointer(payload))
        } catch {
            counters.add(.dropsMalformed)
            recycle(id)
            return
        }
        guard let (allocation, peer) = turn.routeChannelData(channel: frame.channelNumber, from: fiveTuple, now: now),
            let fd = relayFD(allocation, family: peer.ip.family),
            turn.tables.admitBandwidth(allocation, bytes: frame.payload.count, now: now)
        else {
            counters.add(.dropsNoRoute)
            recycle(id)
            return
        }
        turn.tables.countToPeer(allocation, bytes: frame.payload.count)
        sendToPeer(fd: fd, peer: peer, bytes: frame.payload, buffer: id)
    }

    @inline(__always)
    mutating func sendToPeer(fd: Int32, peer: TransportAddress, bytes: UnsafeRawBufferPointer, buffer id: UInt16) {
        if let base = bytes.baseAddress,
            batcher.enqueue(fd: fd, to: peer, bytes: base, count: bytes.count, buffer: id)
        {
            counters.add(.packetsToPeers)
            counters.add(.bytesToPeers, bytes.count)
        } else {
            counters.add(.dropsNoSendOp)
            recycle(id)
        }
    }

    /// The relay socket of `allocation` for a peer of `family`.
    @inline(__always)
    func relayFD(_ allocation: AllocationID, family: IPAddress.Family) -> Int32? {
        guard let r = turn.tables.relays(of: allocation) else { return nil }
        guard let endpoint = family == .v4 ? r.v4 : r.v6 else { return nil }
        let fd = relays.fd(ofHandle: endpoint.handle)
        return fd >= 0 ? fd : nil
    }

    /// STUN from a client: Send indications are data path (forwarded from the
    /// receive buffer); requests are answered inline from the response scratch.
    mutating func handleSTUN(
        _ payload: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, listenerFD: Int32, buffer id: UInt16,
        now: MonotonicTime
    ) {
        if draining && refuseWhileDraining(UnsafeRawBufferPointer(payload), to: fiveTuple.client, listenerFD: listenerFD) {
            recycle(id)
            return
        }
        let outcome = turn.handleSTUN(
            UnsafeRawBufferPointer(payload), from: fiveTuple, now: now, unixTime: Int64(time(nil)),
            response: response, relays: &relays)
        var keptBuffer = false
        switch outcome.effect {
        case .sendToPeer(let allocation, let peer, let range, _):
            if let fd = relayFD(allocation, family: peer.ip.family),
                turn.tables.admitBandwidth(allocation, bytes: range.count, now: now)
            {
                turn.tables.countToPeer(allocation, bytes: range.count)
                sendToPeer(fd: fd, peer: peer, bytes: UnsafeRawBufferPointer(rebasing: payload[range]), buffer: id)
                keptBuffer = true
            } else {
                counters.add(.dropsNoRoute)
            }
        case .allocationCreated(let allocation, let v4, let v6):
            counters.add(.allocationsCreated)
            let relayed = [v4, v6].compactMap { $0?.address.description }.joined(separator: " ")
            log(.info, "allocation created: client \(fiveTuple.client) via \(fiveTuple.server) relay \(relayed) id \(allocation.slot).\(allocation.generation)")
        case .allocationDeleted(let removed):
            counters.add(.allocationsDeleted)
            logRemoved(removed, why: "deleted")
        case .dropped:
            counters.add(.dropsMalformed)
        case .none:
            break
        }
        if !keptBuffer { recycle(id) }
        if outcome.responseLength > 0 {
            counters.add(.stunRequests)
            let n = outcome.responseLength
            let ok = batcher.enqueueGenerated(fd: listenerFD, to: fiveTuple.client) { out in
                out.copyMemory(from: UnsafeRawBufferPointer(rebasing: response[0..<n]))
                return n
            }
            if !ok { counters.add(.dropsNoSendOp) }
        }
        armNewRelays()
        cancelClosedRelays()
    }

    func logRemoved(_ removed: RemovedAllocation, why: String) {
        let c = turn.tables.counters(of: removed.id)
        let traffic = c.map {
            " to-peer \($0.packetsToPeer) pkts/\($0.bytesToPeer) B, to-client \($0.packetsToClient) pkts/\($0.bytesToClient) B"
        } ?? ""
        log(.info, "allocation \(why): client \(removed.fiveTuple.client) via \(removed.fiveTuple.server) id \(removed.id.slot).\(removed.id.generation)\(traffic)")
    }

    // MARK: Peer → client

    @inline(__always)
    mutating func fromPeer(
        relaySlot: Int, socket: RelaySockets.Slot, buffer id: UInt16, length: Int32, now: MonotonicTime
    ) {
        let got: (payload: UnsafeMutableRawBufferPointer, source: TransportAddress)?
        if multishot {
            got = received(buffer: id, length: length, header: header)
        } else {
            got = received(buffer: id, length: length, header: singleShotHeaders![listeners.count + relaySlot])
        }
        guard let (payload, peer) = got, let base = payload.baseAddress else {
            counters.add(.dropsTruncated)
            recycle(id)
            return
        }
        counters.add(.packetsFromPeers)
        counters.add(.bytesFromPeers, payload.count)
        let allocation = socket.allocation
        let route = turn.routePeerData(to: allocation, from: peer, now: now)
        let client: FiveTuple
        let frame: UnsafeRawBufferPointer
        switch route {
        case .channel(let number, let c):
            // The 4-byte header goes into the headroom just before the payload.
            let start = base - ChannelData.headerSize
            ChannelData.writeHeader(channel: number, payloadLength: UInt16(payload.count), to: start)
            client = c
            frame = UnsafeRawBufferPointer(start: start, count: payload.count + ChannelData.headerSize)
        case .dataIndication(let c):
            let prefix = DataIndication.prefixSize(peerFamily: peer.ip.family)
            let bufferStart = buffers.buffer(id)
            let offset = base - bufferStart
            let whole = UnsafeMutableRawBufferPointer(start: bufferStart, count: buffers.bufferSize)
            transactionCounter = transactionCounter &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            guard offset >= prefix,
                let range = try? DataIndication.encode(
                    in: whole, payloadOffset: offset, payloadLength: payload.count, peer: peer,
                    transactionID: TransactionID(high: UInt32(truncatingIfNeeded: transactionCounter >> 32), low: transactionCounter))
            else {
                counters.add(.dropsTruncated)
                recycle(id)
                return
            }
            client = c
            frame = UnsafeRawBufferPointer(rebasing: whole[range])
        case .drop:
            counters.add(.dropsNoRoute)
            recycle(id)
            return
        }
        guard let listenerFD = listenerFD(for: client.server) else {
            counters.add(.dropsNoRoute)
            recycle(id)
            return
        }
        turn.tables.countToClient(allocation, bytes: payload.count)
        if batcher.enqueue(fd: listenerFD, to: client.client, bytes: frame.baseAddress!, count: frame.count, buffer: id) {
            counters.add(.packetsToClients)
            counters.add(.bytesToClients, frame.count)
        } else {
            counters.add(.dropsNoSendOp)
            recycle(id)
        }
    }

    @inline(__always)
    func listenerFD(for local: TransportAddress) -> Int32? {
        for i in 0..<listeners.count where listeners[i].local == local { return listeners[i].fd }
        return nil
    }

    // MARK: Sends

    @inline(__always)
    mutating func flushSends() {
        guard batcher.pendingOperations > 0 else { return }
        while batcher.pendingOperations > 0 {
            let handed = batcher.flush { op, fd, message in
                ring.prepareSendMessage(socket: fd, message: message, userData: UserData(kind: .send, slot: op))
            }
            counters.add(.sendCalls, handed)
            if batcher.pendingOperations > 0 {
                // The SQ is full: submit what is there and go on.
                counters.add(.sqFull)
                flushSubmissions()
            }
        }
    }

    @inline(__always)
    mutating func sendCompleted(op: UInt32, result: Int32) {
        let done = batcher.complete(op) { id in
            buffers.recycle(id)
            buffersOut -= 1
        }
        if result < 0 {
            counters.add(.dropsSendError, done.datagrams)
            if done.usedGSO && (result == -EINVAL || result == -EIO || result == -ENOPROTOOPT) && gsoEnabled {
                gsoEnabled = false
                batcher.disableGSO()
                log(.warning, "worker \(index): the kernel refused a UDP_SEGMENT (GSO) send (\(Errno(rawValue: -result))); GSO is off for this worker from now on")
            }
        } else {
            counters.add(.datagramsSent, done.datagrams)
            if done.usedGSO { counters.add(.gsoSends) }
        }
    }

    // MARK: Receives

    mutating func armListener(_ i: Int) {
        let ud = UserData(kind: .listenerReceive, slot: UInt32(i))
        let fd = listeners[i].fd
        while true {
            let ok =
                multishot
                ? ring.prepareReceiveMessageMultishot(socket: fd, header: header, bufferGroup: Self.groupID, userData: ud)
                : ring.prepareReceiveMessage(
                    socket: fd, header: singleShotHeaders![i], bufferGroup: Self.groupID, userData: ud)
            if ok { return }
            flushSubmissions()
        }
    }

    mutating func armRelay(slot: UInt32, generation: UInt32, fd: Int32) {
        let ud = UserData(kind: .relayReceive, slot: slot, generation: generation)
        while true {
            let ok =
                multishot
                ? ring.prepareReceiveMessageMultishot(socket: fd, header: header, bufferGroup: Self.groupID, userData: ud)
                : ring.prepareReceiveMessage(
                    socket: fd, header: singleShotHeaders![listeners.count + Int(slot)], bufferGroup: Self.groupID,
                    userData: ud)
            if ok { return }
            flushSubmissions()
        }
    }

    mutating func armNewRelays() {
        for slot in relays.takeToArm() {
            if let s = relays.openSlot(slot) {
                armRelay(slot: slot, generation: s.generation, fd: s.fd)
            }
        }
    }

    mutating func cancelClosedRelays() {
        for target in relays.takeToCancel() {
            while !ring.prepareCancel(target: target, userData: UserData(kind: .housekeeping, slot: 0)) {
                flushSubmissions()
            }
        }
    }

    /// Re-arms receives that ended (buffer ring empty, or the single-shot
    /// path). If every buffer is still held by sends in flight, waits for
    /// their completions (they wake the loop) rather than spinning on ENOBUFS.
    mutating func rearmReceives() {
        guard buffersOut < buffers.count else { return }
        pendingRearm = false
        for i in 0..<listeners.count where rearmListeners[i] {
            rearmListeners[i] = false
            counters.add(.receiveRearms)
            armListener(i)
        }
        for ud in rearmRelays {
            if let s = relays.live(slot: ud.slot, generation: ud.generation) {
                counters.add(.receiveRearms)
                armRelay(slot: ud.slot, generation: ud.generation, fd: s.fd)
            }
        }
        rearmRelays.removeAll(keepingCapacity: true)
    }

    // MARK: Timers and shutdown

    mutating func tick(now: MonotonicTime) {
        relays.nowSeconds = now.seconds
        relays.expireReservations()
        while let removed = turn.nextExpired(now: now) {
            if let e = removed.relayV4 { relays.closeRelay(e) }
            if let e = removed.relayV6 { relays.closeRelay(e) }
            counters.add(.allocationsExpired)
            logRemoved(removed, why: "expired")
        }
        cancelClosedRelays()
        if pendingRearm { rearmReceives() }
        flushSubmissions()
        control.counters.publish(counters)
        checkStopRequest(now: now)
    }

    mutating func checkStopRequest(now: MonotonicTime) {
        switch control.stopRequest.load(ordering: .acquiring) {
        case WorkerControl.stopNow:
            stopping = true
        case WorkerControl.drain:
            if !draining { log(.info, "worker \(index): draining \(turn.tables.count) allocations") }
            draining = true
            if turn.tables.count == 0 || now.nanoseconds >= control.drainDeadline.load(ordering: .relaxed) {
                stopping = true
            }
        default:
            break
        }
    }

    /// While draining, an Allocate request is answered 508 without reaching
    /// the state machine. Returns true when it answered.
    mutating func refuseWhileDraining(_ packet: UnsafeRawBufferPointer, to client: TransportAddress, listenerFD: Int32)
        -> Bool
    {
        guard let request = try? STUNMessage(parsing: packet), request.method == .allocate,
            request.messageClass == .request
        else { return false }
        let n: Int
        do throws(STUNError) {
            var e = try STUNEncoder(
                into: response, method: .allocate, class: .errorResponse, transactionID: request.transactionID)
            try e.appendErrorCode(508, reason: "Server Shutting Down")
            n = e.count
        } catch {
            return false
        }
        _ = batcher.enqueueGenerated(fd: listenerFD, to: client) { out in
            out.copyMemory(from: UnsafeRawBufferPointer(rebasing: response[0..<n]))
            return n
        }
        return true
    }

    mutating func shutdown() {
        control.counters.publish(counters)
        let perBatch = Double(counters[.completions]) / Double(max(1, counters[.batches]))
        let perSend = Double(counters[.datagramsSent]) / Double(max(1, counters[.sendCalls]))
        log(
            .info,
            "worker \(index): stopping; \(relays.openCount) relay sockets open; relayed \(counters[.packetsToPeers]) to peers, \(counters[.packetsToClients]) to clients; "
                + "\(oneDecimal(perBatch)) CQEs per batch, \(oneDecimal(perSend)) datagrams per send, "
                + "\(counters[.gsoSends]) GSO sends, \(counters[.enobufs]) ENOBUFS, \(counters[.receiveRearms]) re-arms, "
                + "drops: no route \(counters[.dropsNoRoute]), no send op \(counters[.dropsNoSendOp]), send error \(counters[.dropsSendError]), malformed \(counters[.dropsMalformed])")
    }
}

/// `x` with one decimal, without Foundation's formatter.
func oneDecimal(_ x: Double) -> String {
    let tenths = Int((x * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
