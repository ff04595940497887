import Glibc
import STUN
import TURN
import URing

// The worker's bookkeeping around the packet path: the 1 s tick (expiry),
// control-plane messages (reload, hand-offs), draining and shutdown. See
// Worker.swift for the loop and Worker+Routing.swift for the per-packet path.
extension Worker {
    func logRemoved(_ removed: RemovedAllocation, why: String) {
        let c = removed.counters
        let relayed = [removed.relayV4, removed.relayV6].compactMap { $0?.address.description }.joined(separator: " ")
        log(
            .info,
            "allocation \(why): client \(removed.fiveTuple.client) via \(removed.fiveTuple.server) user \(removed.username) relay \(relayed) id \(removed.id.slot).\(removed.id.generation) "
                + "to-peer \(c.packetsToPeer) pkts/\(c.bytesToPeer) B, to-client \(c.packetsToClient) pkts/\(c.bytesToClient) B"
                + Self.describe(removed.drops))
    }

    /// The limits' drops for the allocation's log line ("" when none).
    static func describe(_ d: PolicyDrops) -> String {
        guard d.total > 0 else { return "" }
        let parts = [("bps", d.bps), ("user_bps", d.userBps), ("capacity", d.capacity), ("pps", d.pps), ("peer_rate", d.peers)]
        return ", limited " + parts.filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }.joined(separator: " ")
    }

    // MARK: Timers and shutdown

    mutating func tick(now: MonotonicTime) {
        datagram.relays.nowSeconds = now.seconds
        datagram.relays.expireReservations()
        while var removed = turn.nextExpired(now: now) {
            removeFastPath(&removed, now: now)
            closeMovedSocket(of: removed.id)
            closeRelays(of: removed)
            stream.allocationGone(removed.id)
            counters.add(.allocationsExpired)
            logRemoved(removed, why: "expired")
        }
        if pending.count > 0 { expireLookups(now: now) }
        datagram.cancelClosedRelays(&reactor)
        datagram.cancelClosedMoved(&reactor)
        fastPathTick(now: now)
        dtlsTick(now: now)
        if stream.connections.capacity > 0 {
            streamTick(now: now)
            if turn.configuration.tcpRelay { tcpRelayTick(now: now) }
        }
        if datagram.needsRearm || stream.needsRearm { rearmReceives() }
        if stream.connections.dirtyCount > 0 { flushStreams() }
        flushSubmissions()
        turn.updateRates()
        counters.set(.policyRefusedPeers, Int(truncatingIfNeeded: turn.tables.peerRateRefusals))
        counters.set(.sqFull, reactor.sqFullEvents)
        control.counters.publish(counters)
        checkStopRequest(now: now)
    }

    /// Closes the relay sockets of an allocation the TURN tables removed.
    mutating func closeRelays(of removed: RemovedAllocation) {
        if let e = removed.relayV4 { datagram.relays.closeRelay(e) }
        if let e = removed.relayV6 { datagram.relays.closeRelay(e) }
    }

    /// Takes what the control plane and other workers sent (ControlQueue.swift).
    mutating func takeControlMessages(now: MonotonicTime) {
        while let message = control.inbox.receive() {
            switch message {
            case .configuration(let new):
                // The tables keep their sizes (fixed at start) and every allocation.
                turn.reconfigure(new)
                resyncFastPath(now: now)
                followSourceLimits(new.sourceLimits)
                log(.info, "worker \(index): new configuration in force")
            case .tls(let new):
                stream.tlsContext = new
                if index == 0 { log(.info, "TLS: new certificate \(new.certificateFile) in force for new connections") }
            case .dtls(let new):
                dtls.replaceContext(new)
                if index == 0 { log(.info, "DTLS: new certificate \(new.certificateFile) in force for new sessions") }
            case .handoff(let h):
                takeHandoff(h, now: now)
            case .admin(let request):
                answerAdmin(request, now: now)
            case .mobilityMove(let move):
                takeMove(move, now: now)
            case .lookupDone(let username, let found, let failed):
                lookupDone(username: username, found: found, failed: failed, now: now)
            }
        }
    }

    mutating func checkStopRequest(now: MonotonicTime) {
        switch control.stopRequest.load(ordering: .acquiring) {
        case WorkerControl.stopNow:
            stopping = true
        case WorkerControl.drain:
            if !draining { log(.info, "worker \(index): draining \(turn.allocationCount) allocations") }
            draining = true
            turn.draining = true
            if turn.allocationCount == 0 || now.nanoseconds >= control.drainDeadline.load(ordering: .relaxed) {
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
        // With alternates for draining, the TURN server answers 300 instead.
        if turn.redirectsWhileDraining(client) { return false }
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
        turn.withdrawActive()
        clearFastPath(now: Self.monotonicNow())
        closeAllStreams()
        closeAllDTLS()
        _ = datagram.flushSends(&reactor)
        flushSubmissions()
        counters.set(.sqFull, reactor.sqFullEvents)
        control.counters.publish(counters)
        let perBatch = Double(counters[.completions]) / Double(max(1, counters[.batches]))
        let perSend = Double(counters[.datagramsSent]) / Double(max(1, counters[.sendCalls]))
        log(
            .info,
            "worker \(index): stopping; \(datagram.relays.openCount) relay sockets open; relayed \(counters[.packetsToPeers]) to peers, \(counters[.packetsToClients]) to clients; "
                + "\(oneDecimal(perBatch)) CQEs per batch, \(oneDecimal(perSend)) datagrams per send, "
                + "\(counters[.gsoSends]) GSO sends, \(counters[.enobufs]) ENOBUFS, \(counters[.receiveRearms]) re-arms, "
                + "drops: no route \(counters[.dropsNoRoute]), no send op \(counters[.dropsNoSendOp]), send error \(counters[.dropsSendError]), malformed \(counters[.dropsMalformed]), too big \(counters[.dropsTooBig])")
    }
}
