import STUN

extension TURNServer {
    /// Refresh (RFC 8656 §8.2): LIFETIME 0 deletes, anything else is clamped.
    mutating func handleRefresh<Relays: RelayPortProvider & ~Copyable>(
        _ request: STUNMessage, id: AllocationID, auth: AuthContext, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer, relays: inout Relays
    ) -> STUNOutcome {
        if let f = request.requestedAddressFamily {
            // A Refresh naming a family the allocation lacks (RFC 8656 §8.2).
            let family: IPAddress.Family? = f == 0x01 ? .v4 : f == 0x02 ? .v6 : nil
            guard let family, hasRelay(id, family: family) else {
                return STUNOutcome(responseLength: errorResponse(443, to: request, auth: auth, into: out), effect: .none)
            }
        }
        if request.lifetime == 0 {
            guard let removed = removeAllocation(id) else {
                return STUNOutcome(responseLength: errorResponse(437, to: request, auth: auth, into: out), effect: .none)
            }
            if let r = removed.relayV4 { relays.closeRelay(r) }
            if let r = removed.relayV6 { relays.closeRelay(r) }
            let n = successResponse(to: request, auth: auth, into: out) { (enc) throws(STUNError) in
                try enc.appendLifetime(0)
            }
            return STUNOutcome(responseLength: n, effect: .allocationDeleted(removed))
        }
        let lifetime = configuration.lifetime(requested: request.lifetime)
        tables.refresh(id, lifetime: lifetime, now: now)
        // RFC 8016 §3.2: every Refresh success of a mobile allocation carries a new ticket.
        // (None once a reload turned mobility off: a ticket would only get 405.)
        let ticket = owners[Int(id.slot)].mobile && configuration.mobility ? issueMobilityTicket(id) : nil
        let n = successResponse(to: request, auth: auth, into: out) { (enc) throws(STUNError) in
            try enc.appendLifetime(lifetime)
            if let ticket { try enc.appendBytes(.mobilityTicket, ticket) }
        }
        return STUNOutcome(responseLength: n, effect: .none)
    }
}
