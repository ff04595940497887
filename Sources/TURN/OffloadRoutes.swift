import STUN

/// A bound channel that a kernel fast path may relay on its own: everything
/// it needs to forward both ways, and until when (the earliest of the
/// channel's, its permission's and the allocation's expiry).
public struct OffloadRoute: Sendable, Equatable {
    public var channel: UInt16
    public var peer: TransportAddress
    /// The client's 5-tuple (UDP).
    public var fiveTuple: FiveTuple
    /// The relayed endpoint for the peer's family.
    public var relay: RelayEndpoint
    /// Monotonic seconds after which it must not forward.
    public var expiresAt: UInt32
}

extension TURNServer {
    /// The channels of `id` that could be relayed below the socket layer
    /// now: a UDP allocation with a UDP relay, the channel bound and
    /// unexpired, the peer's permission valid and the peer allowed by the
    /// current peer policy (a reload can deny it). None while a bandwidth
    /// limit is set: the kernel would not apply it. Control path: called
    /// after a request changed the allocation, and on the tick.
    public func offloadRoutes(of id: AllocationID, now: MonotonicTime) -> [OffloadRoute] {
        guard !configuration.rateLimits.limitsPackets, tables.isLive(id), let fiveTuple = tables.fiveTuple(of: id), fiveTuple.transport == .udp,
            tables.relayTransport(of: id) == .udp
        else { return [] }
        let allocationEnds = now.seconds &+ tables.remainingLifetime(of: id, now: now)
        var routes: [OffloadRoute] = []
        tables.forEachChannel(of: id) { number, peer, channelEnds in
            guard channelEnds > now.seconds, configuration.peerPolicy.denial(forPeer: peer) == nil,
                let permissionEnds = tables.permissionExpiry(peer.ip, in: id), permissionEnds > now.seconds,
                let relay = relayEndpoint(of: id, family: peer.ip.family)
            else { return }
            routes.append(
                OffloadRoute(
                    channel: number, peer: peer, fiveTuple: fiveTuple, relay: relay,
                    expiresAt: min(channelEnds, permissionEnds, allocationEnds)))
        }
        return routes
    }
}

extension TURNServer {
    /// Counts what a kernel fast path relayed for `id` (its log line and
    /// counters then include it).
    public mutating func countOffloaded(
        _ id: AllocationID, packetsToPeer: UInt64, bytesToPeer: UInt64, packetsToClient: UInt64, bytesToClient: UInt64
    ) {
        tables.countOffloaded(
            id, packetsToPeer: packetsToPeer, bytesToPeer: bytesToPeer, packetsToClient: packetsToClient,
            bytesToClient: bytesToClient)
    }
}

extension AllocationTable {
    mutating func countOffloaded(
        _ id: AllocationID, packetsToPeer: UInt64, bytesToPeer: UInt64, packetsToClient: UInt64, bytesToClient: UInt64
    ) {
        guard isLive(id) else { return }
        records[Int(id.slot)].counters.packetsToPeer &+= packetsToPeer
        records[Int(id.slot)].counters.bytesToPeer &+= bytesToPeer
        records[Int(id.slot)].counters.packetsToClient &+= packetsToClient
        records[Int(id.slot)].counters.bytesToClient &+= bytesToClient
    }

    /// Calls `body` with each channel binding of `id` (number, peer, bound
    /// until), expired or not.
    func forEachChannel(of id: AllocationID, _ body: (UInt16, TransportAddress, UInt32) -> Void) {
        guard isLive(id) else { return }
        let base = Int(id.slot) * channelsPerAllocation
        for i in base..<base + channelsPerAllocation where channels[i].live {
            body(channels[i].number, channels[i].peer, channels[i].expiresAt)
        }
    }

    /// Until when `ip` is permitted on `id`, if it has a permission.
    func permissionExpiry(_ ip: IPAddress, in id: AllocationID) -> UInt32? {
        guard isLive(id), let i = permissionIndex.get(PermissionKey(slot: id.slot, ip: ip)) else { return nil }
        return permissions[Int(i)].expiresAt
    }
}
