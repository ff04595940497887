import STUN

extension TURNServer {
    /// Allocate (RFC 8656 §7.2; dual allocation RFC 8656 §7.2 / RFC 6156; TCP
    /// relays RFC 6062 §5.1 when `configuration.tcpRelay` is on).
    mutating func handleAllocate<Relays: RelayPortProvider & ~Copyable>(
        _ request: STUNMessage, auth: AuthContext, from fiveTuple: FiveTuple, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer, relays: inout Relays
    ) -> STUNOutcome {
        func fail(_ code: Int) -> STUNOutcome {
            STUNOutcome(responseLength: errorResponse(code, to: request, auth: auth, into: out), effect: .none)
        }
        if let alternate = alternate(for: fiveTuple.client) {
            let n = errorResponse(300, to: request, auth: auth, into: out) { (enc) throws(STUNError) in
                try enc.append(.alternateServer, address: alternate)
            }
            return STUNOutcome(responseLength: n, effect: .none)
        }
        // Same 5-tuple, new transaction: the retransmission cache already
        // answered a true retransmission, so this is a mismatch.
        if tables.allocation(for: fiveTuple) != nil { return fail(437) }
        guard let transport = request.requestedTransport else { return fail(400) }
        let relayTransport: RelayTransport
        switch transport {
        case RelayTransport.udp.rawValue where configuration.udpRelay:
            relayTransport = .udp
        case RelayTransport.tcp.rawValue where configuration.tcpRelay:
            // RFC 6062 §5.1: only over a TCP or TLS control connection, and
            // without DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN (all 400).
            guard fiveTuple.transport == .tcp || fiveTuple.transport == .tls else { return fail(400) }
            guard !request.dontFragment, request.evenPort == nil, request.reservationToken == nil else {
                return fail(400)
            }
            relayTransport = .tcp
        default:
            return fail(442)
        }
        if request.dontFragment && !configuration.supportsDontFragment {
            var unknown = UnknownAttributeList()
            unknown.insert(.dontFragment)
            let n = errorResponse(420, to: request, auth: auth, into: out) { (enc) throws(STUNError) in
                try enc.appendUnknownAttributes(unknown)
            }
            return STUNOutcome(responseLength: n, effect: .none)
        }
        let token = request.reservationToken
        let evenPort = request.evenPort
        let requestedFamily = request.requestedAddressFamily
        let additionalFamily = request.additionalAddressFamily
        // RFC 8016 §3.1: the client asks for mobility with an empty ticket
        // (allowed here: the dispatcher answered 405 otherwise).
        if let ticket = request.mobilityTicket, ticket.count != 0 { return fail(400) }
        if token != nil && (evenPort != nil || requestedFamily != nil || additionalFamily != nil) { return fail(400) }
        if requestedFamily != nil && additionalFamily != nil { return fail(400) }

        var primary = IPAddress.Family.v4
        if let f = requestedFamily {
            switch f {
            case 0x01: primary = .v4
            case 0x02: primary = .v6
            default: return fail(440)
            }
        }
        var wantSecond = false
        if let f = additionalFamily {
            // Only IPv6 may be added to the default IPv4 relay (RFC 8656 §7.2).
            guard f == 0x02 else { return fail(400) }
            wantSecond = true
        }
        // REQUESTED-ADDRESS-FAMILY applies to TCP relays as to UDP ones. A
        // dual allocation does not: RFC 6062 gives a TCP allocation one
        // relayed transport address, and RFC 8656 §7.2 says a server that
        // cannot provide the additional family must not fail the request but
        // answer with the first family only and ADDRESS-ERROR-CODE 440.
        let secondUnsupported = wantSecond && relayTransport == .tcp
        if token == nil && !configuration.relayFamilies.contains(primary) { return fail(440) }

        let quotaUser = configuration.credentials.quotaUser(of: auth.username)
        guard quotas.acquire(user: quotaUser) else { return fail(486) }
        let lifetime = configuration.lifetime(requested: request.lifetime)
        let (rate, cause) = initialRate(quotaUser: quotaUser)
        guard
            let id = tables.create(
                fiveTuple: fiveTuple, lifetime: lifetime, now: now, relayTransport: relayTransport, rate: rate,
                cause: cause)
        else {
            quotas.release(user: quotaUser)
            return fail(508)
        }
        let first: RelayEndpoint?
        if relayTransport == .tcp {
            first = relays.openTCPRelay(for: id, family: primary)
        } else if let token {
            first = relays.openReservedRelay(for: id, token: token)
        } else {
            first = relays.openRelay(
                for: id, family: primary, evenPort: evenPort != nil, reserveNext: evenPort ?? false)
        }
        guard let first else {
            tables.remove(id)
            quotas.release(user: quotaUser)
            return fail(508)
        }
        // The second family of a dual allocation is best effort: its failure
        // is reported in ADDRESS-ERROR-CODE and the allocation stands.
        var second: RelayEndpoint?
        var secondError = 0
        if wantSecond {
            if secondUnsupported || !configuration.relayFamilies.contains(.v6) {
                secondError = 440
            } else if let r = relays.openRelay(for: id, family: .v6, evenPort: false, reserveNext: false) {
                second = r
            } else {
                secondError = 508
            }
        }
        let v4 = first.address.ip.family == .v4 ? first : second
        let v6 = first.address.ip.family == .v6 ? first : second
        tables.setRelays(id, v4: v4, v6: v6)
        owners[Int(id.slot)] = Owner(
            username: auth.username, quotaUser: quotaUser, origin: OriginCheck.first(in: request),
            createdAt: now.seconds)
        let ticket = request.mobilityTicket != nil ? issueMobilityTicket(id) : nil
        if ticket != nil { owners[Int(id.slot)].mobile = true }

        let n = successResponse(to: request, auth: auth, into: out) { (enc) throws(STUNError) in
            try enc.append(.xorRelayedAddress, xorAddress: first.address)
            if let second { try enc.append(.xorRelayedAddress, xorAddress: second.address) }
            try enc.appendLifetime(lifetime)
            // Never for TCP (RFC 6062 §5.1), whatever the provider returned.
            if first.reservationToken != 0 && relayTransport == .udp {
                try enc.append(.reservationToken, uint64: first.reservationToken)
            }
            try enc.append(.xorMappedAddress, xorAddress: fiveTuple.client)
            if let ticket { try enc.appendBytes(.mobilityTicket, ticket) }
            if secondError != 0 {
                let reason = Array(reasonPhrase(secondError).utf8)
                var failure: STUNError?
                reason.withUnsafeBytes { r in
                    do throws(STUNError) {
                        try enc.appendAddressErrorCode(family: 0x02, code: secondError, reason: r)
                    } catch { failure = error }
                }
                if let failure { throw failure }
            }
        }
        return STUNOutcome(responseLength: n, effect: .allocationCreated(id, relayV4: v4, relayV6: v6))
    }
}
