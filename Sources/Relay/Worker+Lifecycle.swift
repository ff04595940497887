import Glibc
import STUN
import TURN
import URing

// The worker's bookkeeping around the packet path: flushing and completing
// sends, arming and re-arming receives, the 1 s tick (expiry), draining and
// shutdown. See Worker.swift for the loop and Worker+Dispatch.swift for the
// per-packet path.
extension Worker {
    // MARK: Sends

    @inline(__always)
    mutating func flushSends() {
        guard batcher.pendingOperations > 0 else { return }
        for _ in 0..<Self.submitAttempts {
            let handed = batcher.flush { op, fd, message in
                ring.prepareSendMessage(socket: fd, message: message, userData: UserData(kind: .send, slot: op))
            }
            counters.add(.sendCalls, handed)
            if batcher.pendingOperations == 0 { return }
            // The SQ is full: submit what is there and go on.
            counters.add(.sqFull)
            flushSubmissions()
        }
        // The kernel takes nothing (EBUSY: its completion backlog is full).
        // What is left stays queued for the next pass of the loop, which
        // reaps completions first.
    }

    /// Times a full SQ is submitted before work is left for the next pass.
    /// A submit that consumes nothing means the CQ must be reaped first, so
    /// retrying here without reaping could spin forever.
    static var submitAttempts: Int { 4 }

    @inline(__always)
    mutating func sendCompleted(op: UInt32, result: Int32) {
        let done = batcher.complete(op) { handle in buffers.release(handle) }
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
        let armed = armReceive(
            fd: listeners[i].fd, userData: UserData(kind: .listenerReceive, slot: UInt32(i)), large: groClient,
            singleShotHeader: i)
        if !armed {
            rearmListeners[i] = true
            pendingRearm = true
        }
    }

    mutating func armRelay(slot: UInt32, generation: UInt32, fd: Int32) {
        let ud = UserData(kind: .relayReceive, slot: slot, generation: generation)
        if !armReceive(fd: fd, userData: ud, large: groPeer, singleShotHeader: listeners.count + Int(slot)) {
            rearmRelays.append(ud)
            pendingRearm = true
        }
    }

    /// Arms a multishot receive (or, on the 5.19 path, a single-shot one with
    /// that socket's own header), submitting first if the SQ is full. Returns
    /// false when the SQ stays full; the caller re-arms on a later pass.
    private mutating func armReceive(fd: Int32, userData ud: UserData, large: Bool, singleShotHeader index: Int)
        -> Bool
    {
        for _ in 0..<Self.submitAttempts {
            let ok =
                multishot
                ? ring.prepareReceiveMessageMultishot(
                    socket: fd, header: header, bufferGroup: large ? ReceiveBuffers.largeGroup : ReceiveBuffers.smallGroup,
                    userData: ud)
                : ring.prepareReceiveMessage(
                    socket: fd, header: singleShotHeaders![index], bufferGroup: ReceiveBuffers.smallGroup, userData: ud)
            if ok { return true }
            counters.add(.sqFull)
            flushSubmissions()
        }
        return false
    }

    mutating func armNewRelays() {
        guard relays.pendingArms > 0 else { return }
        for i in 0..<relays.pendingArms {
            let slot = relays.pendingArm(i)
            guard let s = relays.openSlot(slot) else { continue }
            if s.tcp {
                armRelayAccept(slot: slot, generation: s.generation, fd: s.fd)
            } else {
                armRelay(slot: slot, generation: s.generation, fd: s.fd)
            }
        }
        relays.clearPendingArms()
    }

    mutating func cancelClosedRelays() {
        guard relays.pendingCancels > 0 else { return }
        var done = 0
        cancels: while done < relays.pendingCancels {
            var attempts = 0
            while !ring.prepareCancel(target: relays.pendingCancel(done), userData: UserData(kind: .housekeeping, slot: 0)) {
                attempts += 1
                if attempts == Self.submitAttempts { break cancels }  // the rest waits for the next tick
                flushSubmissions()
            }
            done += 1
        }
        relays.dropPendingCancels(first: done)
    }

    /// Re-arms receives that ended (buffer ring empty, or the single-shot
    /// path). A socket whose buffer group is still all held by sends in
    /// flight waits for their completions (they wake the loop) rather than
    /// spinning on ENOBUFS.
    mutating func rearmReceives() {
        pendingRearm = false
        rearmStreamListeners()
        let clientBuffers = buffers.hasFree(large: groClient)
        let peerBuffers = buffers.hasFree(large: groPeer)
        for i in 0..<listeners.count where rearmListeners[i] {
            guard clientBuffers else {
                pendingRearm = true
                break
            }
            rearmListeners[i] = false
            counters.add(.receiveRearms)
            armListener(i)
        }
        guard peerBuffers else {
            if !rearmRelays.isEmpty { pendingRearm = true }
            return
        }
        // armRelay appends what it cannot arm, so walk only the entries there now.
        let count = rearmRelays.count
        for i in 0..<count {
            let ud = rearmRelays[i]
            if let s = relays.live(slot: ud.slot, generation: ud.generation) {
                counters.add(.receiveRearms)
                armRelay(slot: ud.slot, generation: ud.generation, fd: s.fd)
            }
        }
        rearmRelays.removeFirst(count)
    }

    func logRemoved(_ removed: RemovedAllocation, why: String) {
        let c = removed.counters
        let relayed = [removed.relayV4, removed.relayV6].compactMap { $0?.address.description }.joined(separator: " ")
        log(
            .info,
            "allocation \(why): client \(removed.fiveTuple.client) via \(removed.fiveTuple.server) user \(removed.username) relay \(relayed) id \(removed.id.slot).\(removed.id.generation) "
                + "to-peer \(c.packetsToPeer) pkts/\(c.bytesToPeer) B, to-client \(c.packetsToClient) pkts/\(c.bytesToClient) B")
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
        if streams.capacity > 0 {
            streamTick(now: now)
            if turn.configuration.tcpRelay { tcpRelayTick(now: now) }
        }
        if pendingRearm { rearmReceives() }
        if streams.dirtyCount > 0 { flushStreams() }
        flushSubmissions()
        control.counters.publish(counters)
        checkStopRequest(now: now)
    }

    /// Takes a configuration offered by `Engine.reload`, keeping the tables
    /// (their sizes were fixed at start).
    mutating func takeNewConfiguration() {
        guard let new = control.pendingConfiguration.withLock({ c -> TURNConfiguration? in
            defer { c = nil }
            return c
        }) else { return }
        var next = new
        next.limits = turn.configuration.limits
        turn.configuration = next
        log(.info, "worker \(index): new configuration in force")
    }

    /// Takes a certificate and key offered by `Engine.reload(tls:)`.
    mutating func takeNewTLSContext() {
        guard let new = control.pendingTLS.withLock({ c -> TLSServerContext? in
            defer { c = nil }
            return c
        }) else { return }
        tlsContext = new
        if index == 0 { log(.info, "TLS: new certificate \(new.certificateFile) in force for new connections") }
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
    mutating func refuseWhileDraining(_ packet: UnsafeRawBufferPointer, to client: TransportAddress, reply: ClientReply)
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
        replyToClient(reply, client, UnsafeRawBufferPointer(rebasing: response[0..<n]))
        return true
    }

    mutating func shutdown() {
        closeAllStreams()
        control.counters.publish(counters)
        let perBatch = Double(counters[.completions]) / Double(max(1, counters[.batches]))
        let perSend = Double(counters[.datagramsSent]) / Double(max(1, counters[.sendCalls]))
        log(
            .info,
            "worker \(index): stopping; \(relays.openCount) relay sockets open; relayed \(counters[.packetsToPeers]) to peers, \(counters[.packetsToClients]) to clients; "
                + "\(oneDecimal(perBatch)) CQEs per batch, \(oneDecimal(perSend)) datagrams per send, "
                + "\(counters[.gsoSends]) GSO sends, \(counters[.enobufs]) ENOBUFS, \(counters[.receiveRearms]) re-arms, "
                + "drops: no route \(counters[.dropsNoRoute]), no send op \(counters[.dropsNoSendOp]), send error \(counters[.dropsSendError]), malformed \(counters[.dropsMalformed])")
    }}
