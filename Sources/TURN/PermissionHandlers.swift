import STUN

extension TURNServer {
    /// CreatePermission (RFC 8656 §10.2): one or more XOR-PEER-ADDRESS, all
    /// installed or none.
    mutating func handleCreatePermission(
        _ request: STUNMessage, id: AllocationID, auth: AuthContext, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        func fail(_ code: Int) -> STUNOutcome {
            STUNOutcome(responseLength: errorResponse(code, to: request, auth: auth, into: out), effect: .none)
        }
        var any = false
        for peer in request.xorPeerAddresses {
            any = true
            guard hasRelay(id, family: peer.ip.family) else { return fail(443) }
            guard configuration.peerPolicy.isAllowed(peer.ip) else { return fail(403) }
        }
        guard any else { return fail(400) }
        guard tables.canInstallPermissions(request.xorPeerAddresses.lazy.map(\.ip), in: id, now: now) else {
            return fail(508)
        }
        // --max-new-peers-per-second: only addresses not yet permitted count.
        if tables.rateLimits.maxNewPeersPerSecond != 0 {
            var fresh: [IPAddress] = []
            for peer in request.xorPeerAddresses where !tables.isPermitted(peer.ip, in: id, now: now) {
                if !fresh.contains(peer.ip) { fresh.append(peer.ip) }
            }
            guard tables.admitNewPeers(fresh.count, in: id, now: now) else { return fail(508) }
        }
        for peer in request.xorPeerAddresses { _ = tables.installPermission(peer.ip, in: id, now: now) }
        return STUNOutcome(responseLength: successResponse(to: request, auth: auth, into: out), effect: .none)
    }

    /// ChannelBind (RFC 8656 §11.2): binds or refreshes a channel and the
    /// peer's permission.
    mutating func handleChannelBind(
        _ request: STUNMessage, id: AllocationID, auth: AuthContext, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        func fail(_ code: Int) -> STUNOutcome {
            STUNOutcome(responseLength: errorResponse(code, to: request, auth: auth, into: out), effect: .none)
        }
        // Channels carry datagrams; a TCP allocation (RFC 6062) has none to
        // carry, and RFC 6062 defines no channels for it.
        guard tables.relayTransport(of: id) == .udp else { return fail(400) }
        guard let number = request.channelNumber, let peer = request.xorPeerAddress else { return fail(400) }
        let upper: UInt16 = configuration.strictChannelNumbers ? 0x4FFF : 0x7FFF
        guard number >= 0x4000, number <= upper else { return fail(400) }
        guard hasRelay(id, family: peer.ip.family) else { return fail(443) }
        guard configuration.peerPolicy.denial(forPeer: peer) == nil else { return fail(403) }
        switch tables.checkChannelBind(number, to: peer, in: id, now: now) {
        case .numberTakenByOtherPeer, .peerHasOtherNumber: return fail(400)
        case .full: return fail(508)
        case .bound: break
        }
        guard tables.isPermitted(peer.ip, in: id, now: now) || tables.canInstallPermissions(CollectionOfOne(peer.ip), in: id, now: now)
        else { return fail(508) }
        guard tables.isPermitted(peer.ip, in: id, now: now) || tables.admitNewPeers(1, in: id, now: now) else {
            return fail(508)
        }
        _ = tables.bindChannel(number, to: peer, in: id, now: now)
        _ = tables.installPermission(peer.ip, in: id, now: now)
        return STUNOutcome(responseLength: successResponse(to: request, auth: auth, into: out), effect: .none)
    }

    /// Send indication (RFC 8656 §11.4): never answered; relayed when the
    /// allocation exists and the peer has a permission.
    func handleSendIndication(_ request: STUNMessage, from fiveTuple: FiveTuple, now: MonotonicTime) -> STUNOutcome {
        guard let id = tables.allocation(for: fiveTuple) else {
            return STUNOutcome(responseLength: 0, effect: .dropped(.noAllocation))
        }
        guard tables.relayTransport(of: id) == .udp else {
            return STUNOutcome(responseLength: 0, effect: .dropped(.notUDPRelay))
        }
        guard let peer = request.xorPeerAddress, let data = request.data else {
            return STUNOutcome(responseLength: 0, effect: .dropped(.missingAttribute))
        }
        guard hasRelay(id, family: peer.ip.family) else {
            return STUNOutcome(responseLength: 0, effect: .dropped(.peerFamilyMismatch))
        }
        // A permission names the address only: this server's own address is
        // reachable on relay ports alone (PeerPolicy.relayPorts).
        guard tables.isPermitted(peer.ip, in: id, now: now), !configuration.peerPolicy.reachesOwnService(peer) else {
            return STUNOutcome(responseLength: 0, effect: .dropped(.noPermission))
        }
        let start = data.baseAddress! - request.bytes.baseAddress!
        return STUNOutcome(
            responseLength: 0,
            effect: .sendToPeer(id, peer: peer, payload: start..<(start + data.count), dontFragment: request.dontFragment))
    }
}
