import STUN

/// Channels (RFC 8656 §12): a number in 0x4000–0x7FFF bound to one peer
/// transport address per allocation, 600 s each, with the binding kept
/// reserved 5 minutes after it expires.
extension AllocationTable {
    /// The peer bound to `number` on `id`, if the binding is unexpired and
    /// the peer's permission is valid. Client → peer ChannelData, data path.
    @inline(__always)
    public func peer(forChannel number: UInt16, in id: AllocationID, now: MonotonicTime) -> TransportAddress? {
        guard let i = channelByNumber.get(ChannelNumberKey(slot: id.slot, number: number)) else { return nil }
        let e = channels[Int(i)]
        guard e.expiresAt > now.seconds, isPermitted(e.peer.ip, in: id, now: now) else { return nil }
        return e.peer
    }

    /// The channel bound to `peer` on `id`, if unexpired. Peer → client, data path.
    @inline(__always)
    public func channel(forPeer peer: TransportAddress, in id: AllocationID, now: MonotonicTime) -> UInt16? {
        guard let i = channelByPeer.get(ChannelPeerKey(slot: id.slot, peer: peer)) else { return nil }
        let e = channels[Int(i)]
        guard e.expiresAt > now.seconds, records[Int(id.slot)].generation == id.generation else { return nil }
        return e.number
    }

    /// Binds or refreshes `number` ↔ `peer` (the permission is the caller's job).
    public mutating func bindChannel(
        _ number: UInt16, to peer: TransportAddress, in id: AllocationID, now: MonotonicTime
    ) -> ChannelBindOutcome {
        guard isLive(id) else { return .full }
        let expires = now.seconds &+ limits.channelLifetime
        let numberKey = ChannelNumberKey(slot: id.slot, number: number)
        let peerKey = ChannelPeerKey(slot: id.slot, peer: peer)
        if let i = channelByNumber.get(numberKey) {
            if reservationOver(Int(i), now: now) {
                removeChannel(at: Int(i), slot: id.slot)
            } else if channels[Int(i)].peer != peer {
                return .numberTakenByOtherPeer
            } else {
                channels[Int(i)].expiresAt = expires
                return .bound
            }
        }
        if let i = channelByPeer.get(peerKey) {
            if reservationOver(Int(i), now: now) {
                removeChannel(at: Int(i), slot: id.slot)
            } else {
                return .peerHasOtherNumber
            }
        }
        let c = channelsPerAllocation
        let base = Int(id.slot) * c
        if Int(records[Int(id.slot)].channelCount) >= c { sweepChannels(slot: id.slot, now: now) }
        guard Int(records[Int(id.slot)].channelCount) < c else { return .full }
        for i in base..<base + c where !channels[i].live {
            channels[i] = ChannelEntry(number: number, peer: peer, expiresAt: expires, live: true)
            channelByNumber.set(numberKey, UInt32(i))
            channelByPeer.set(peerKey, UInt32(i))
            records[Int(id.slot)].channelCount += 1
            return .bound
        }
        return .full
    }

    /// Whether binding `number` ↔ `peer` would succeed, without changing anything.
    func checkChannelBind(_ number: UInt16, to peer: TransportAddress, in id: AllocationID, now: MonotonicTime)
        -> ChannelBindOutcome
    {
        guard isLive(id) else { return .full }
        if let i = channelByNumber.get(ChannelNumberKey(slot: id.slot, number: number)), !reservationOver(Int(i), now: now) {
            return channels[Int(i)].peer == peer ? .bound : .numberTakenByOtherPeer
        }
        if let i = channelByPeer.get(ChannelPeerKey(slot: id.slot, peer: peer)), !reservationOver(Int(i), now: now) {
            return .peerHasOtherNumber
        }
        let c = channelsPerAllocation
        let base = Int(id.slot) * c
        var held = 0
        for i in base..<base + c where channels[i].live && !reservationOver(i, now: now) { held += 1 }
        return held < c ? .bound : .full
    }

    /// Channels of `id` still bound (not merely reserved).
    public func channelCount(of id: AllocationID, now: MonotonicTime) -> Int {
        guard isLive(id) else { return 0 }
        let c = channelsPerAllocation
        let base = Int(id.slot) * c
        var n = 0
        for i in base..<base + c where channels[i].live && channels[i].expiresAt > now.seconds { n += 1 }
        return n
    }

    @inline(__always)
    func reservationOver(_ i: Int, now: MonotonicTime) -> Bool {
        channels[i].expiresAt &+ limits.channelReservation <= now.seconds
    }

    mutating func sweepChannels(slot: UInt32, now: MonotonicTime) {
        let c = channelsPerAllocation
        let base = Int(slot) * c
        for i in base..<base + c where channels[i].live && reservationOver(i, now: now) {
            removeChannel(at: i, slot: slot)
        }
    }

    mutating func removeChannel(at i: Int, slot: UInt32) {
        channelByNumber.remove(ChannelNumberKey(slot: slot, number: channels[i].number))
        channelByPeer.remove(ChannelPeerKey(slot: slot, peer: channels[i].peer))
        channels[i].live = false
        records[Int(slot)].channelCount -= 1
    }
}
