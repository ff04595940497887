import TURN

// The worker's side of the admin API: it answers for its own allocations
// when it takes a request from its inbox (a wake-up, never per packet).
extension Worker {
    mutating func answerAdmin(_ request: AdminRequest, now: MonotonicTime) {
        var sessions: [AllocationSnapshot] = []
        switch request.command {
        case .sessions(let user):
            // What the kernel fast path relayed since its last read joins the counters first.
            fastPathTick(now: now)
            sessions = turn.snapshots(user: user, now: now)
        case .disconnectUser(let user):
            for id in turn.allocations(ofUser: user) {
                if let s = endAllocation(id, now: now) { sessions.append(s) }
            }
        case .disconnectSession(let id):
            if let s = endAllocation(id, now: now) { sessions.append(s) }
        }
        request.replies.deliver(WorkerAnswer(worker: index, sessions: sessions))
    }

    /// Ends allocation `id` as a Refresh with LIFETIME 0 would (quota given
    /// back, relays closed, fast-path entries deleted, RFC 6062 connections
    /// closed), and closes the TCP/TLS connection or DTLS session it was made over, so the
    /// client's next request fails whatever its transport. Returns it as it was.
    mutating func endAllocation(_ id: AllocationID, now: MonotonicTime) -> AllocationSnapshot? {
        if fastPath.enabled { fastPathTick(now: now) }
        guard let snapshot = turn.snapshot(of: id, now: now) else { return nil }
        let connection = stream.connection(of: id)
        guard var removed = turn.removeAllocation(id) else { return nil }
        removeFastPath(&removed, now: now)
        closeMovedSocket(of: removed.id)
        closeRelays(of: removed)
        stream.allocationGone(removed.id)
        counters.add(.allocationsDeleted)
        logRemoved(removed, why: "ended by the admin API")
        if removed.relayTransport == .tcp { closeConnectionsOfRemovedAllocations() }
        datagram.cancelClosedRelays(&reactor)
        if let connection { closeStream(connection, why: "closed by the admin API (its allocation was ended)") }
        if removed.fiveTuple.transport == .dtls, let slot = dtls.slot(of: removed.fiveTuple) {
            shutDownDTLS(slot, why: "closed by the admin API")
        }
        return snapshot
    }
}
