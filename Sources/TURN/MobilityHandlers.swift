import STUN

// RFC 8016 mobility: a UDP allocation asked for with an empty
// MOBILITY-TICKET gets a sealed ticket in the Allocate and in every Refresh
// success; a Refresh carrying the newest ticket from another 5-tuple moves
// the allocation there.
extension TURNServer {
    /// Sets the worker number written into this worker's mobility tickets.
    public mutating func setWorkerIndex(_ index: Int, of count: Int = 1) {
        precondition((0...Int(UInt16.max)).contains(index), "worker index out of range")
        precondition(count > index && count <= Int(UInt16.max), "worker count out of range")
        workerIndex = UInt16(index)
        workerCount = UInt16(count)
    }

    /// Whether a request from `fiveTuple` may use mobility: on, and UDP
    /// (RFC 8016 is for UDP; a TCP or TLS client's address cannot change
    /// under its connection).
    func mobilityAllowed(for fiveTuple: FiveTuple) -> Bool {
        configuration.mobility && fiveTuple.transport == .udp
    }

    /// A fresh ticket for `id`; older ones stop working. Control path.
    mutating func issueMobilityTicket(_ id: AllocationID) -> [UInt8] {
        owners[Int(id.slot)].ticketCounter &+= 1
        let ticket = MobilityTicket(worker: workerIndex, allocation: id, counter: owners[Int(id.slot)].ticketCounter)
        return configuration.mobilityTickets.seal(ticket)
    }

    /// Refresh with a MOBILITY-TICKET from a 5-tuple that has no allocation
    /// (RFC 8016 §3.2): checks the ticket and the user, moves the
    /// allocation to `fiveTuple`, then refreshes it as usual (a new ticket
    /// in the answer).
    ///
    /// A ticket naming another worker is not answered here: the effect
    /// `.forwardMove` tells the engine to hand the request to the owner,
    /// which runs it through this same function.
    ///
    /// Refusals: a ticket this server did not seal, or an older one than the
    /// newest (replayed), 400; another user's allocation, 441; an allocation
    /// gone, 437; a move from another worker whose client-facing socket
    /// could not be opened (`crossWorkerMoveSocket` false: its table is
    /// full, or bind/connect failed), 508.
    mutating func handleMobilityRefresh<Relays: RelayPortProvider & ~Copyable>(
        _ request: STUNMessage, ticket sealed: UnsafeRawBufferPointer, auth: AuthContext, from fiveTuple: FiveTuple,
        now: MonotonicTime, into out: UnsafeMutableRawBufferPointer, relays: inout Relays
    ) -> STUNOutcome {
        func fail(_ code: Int) -> STUNOutcome {
            STUNOutcome(responseLength: errorResponse(code, to: request, auth: auth, into: out), effect: .none)
        }
        guard let ticket = configuration.mobilityTickets.open(sealed) else { return fail(400) }
        if ticket.worker != workerIndex {
            guard ticket.worker < workerCount else { return fail(437) }
            return STUNOutcome(responseLength: 0, effect: .forwardMove(toWorker: ticket.worker))
        }
        guard tables.isLive(ticket.allocation),
            let old = tables.fiveTuple(of: ticket.allocation)
        else { return fail(437) }
        let id = ticket.allocation
        let owner = owners[Int(id.slot)]
        guard owner.username == auth.username else { return fail(441) }
        if configuration.checkOriginConsistency && !OriginCheck.isConsistent(request, with: owner.origin) {
            return fail(441)
        }
        guard owner.mobile, ticket.counter == owner.ticketCounter else { return fail(400) }
        // The new 5-tuple may name another listening address of this
        // server (a phone going from IPv4 Wi-Fi to IPv6 cellular): replies
        // go out from the listener the 5-tuple names, which every worker has.
        // What the Refresh itself could refuse is refused before the move,
        // so a refused Refresh leaves the allocation where it was.
        if let f = request.requestedAddressFamily {
            let family: IPAddress.Family? = f == 0x01 ? .v4 : f == 0x02 ? .v6 : nil
            guard let family, hasRelay(id, family: family) else { return fail(443) }
        }
        if crossWorkerMoveSocket == false { return fail(508) }
        guard tables.move(id, to: fiveTuple) else { return fail(437) }
        var outcome = handleRefresh(request, id: id, auth: auth, now: now, into: out, relays: &relays)
        if case .none = outcome.effect { outcome.effect = .allocationMoved(id, from: old) }
        return outcome
    }
}
