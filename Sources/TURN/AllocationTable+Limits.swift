/// The traffic limits of each allocation (RateLimits.swift): per-packet
/// admission on the data path, rates set once a second on the control path.
extension AllocationTable {
    /// Charges a packet of `bytes` to the allocation's limits in the
    /// direction given, and says whether it may pass or which limit stopped
    /// it (counted on the allocation). Always `.pass` when no limit is
    /// configured, or for a stale id (routing drops those). Data path: no
    /// allocation, no reference counting.
    @inline(__always)
    public mutating func admit(_ id: AllocationID, bytes: Int, toPeer: Bool, now: MonotonicTime) -> Admission {
        guard limitsPackets, isLive(id) else { return .pass }
        let r = records + Int(id.slot)
        r.pointee.limiter.active = true
        let rate = r.pointee.limiter.rate
        if rate != 0 {
            let burst = TokenBucket.burst(rate: rate, floor: LimiterState.byteBurstFloor)
            let ok =
                toPeer
                ? r.pointee.limiter.toPeer.take(UInt64(bytes), rate: rate, burst: burst, now: now.nanoseconds)
                : r.pointee.limiter.toClient.take(UInt64(bytes), rate: rate, burst: burst, now: now.nanoseconds)
            if !ok {
                let a: Admission =
                    switch r.pointee.limiter.cause {
                    case .user: .userBps
                    case .capacity: .capacity
                    case .allocation, .none: .bps
                    }
                r.pointee.limiter.drops.count(a)
                return a
            }
        }
        let pps = rateLimits.maxPacketsPerSecond
        if pps != 0 && !r.pointee.limiter.packets.take(1, rate: pps, burst: TokenBucket.burst(rate: pps, floor: 1), now: now.nanoseconds) {
            r.pointee.limiter.drops.count(.pps)
            return .pps
        }
        return .pass
    }

    /// Charges `count` new peer addresses to `--max-new-peers-per-second`;
    /// false (counted as refused) when over it. Control path.
    public mutating func admitNewPeers(_ count: Int, in id: AllocationID, now: MonotonicTime) -> Bool {
        let rate = rateLimits.maxNewPeersPerSecond
        guard rate != 0, count > 0, isLive(id) else { return true }
        let l = records + Int(id.slot)
        guard l.pointee.limiter.peers.take(UInt64(count), rate: rate, burst: max(rate, 1), now: now.nanoseconds) else {
            l.pointee.limiter.drops.peers &+= 1
            peerRateRefusals &+= 1
            return false
        }
        return true
    }

    /// What the limits dropped on a live allocation so far.
    public func drops(of id: AllocationID) -> PolicyDrops? {
        guard isLive(id) else { return nil }
        return records[Int(id.slot)].limiter.drops
    }

    /// The byte rate in force for a live allocation and what set it.
    public func rate(of id: AllocationID) -> (UInt64, RateCause)? {
        guard isLive(id) else { return nil }
        return (records[Int(id.slot)].limiter.rate, records[Int(id.slot)].limiter.cause)
    }

    /// Sets a live allocation's byte rate; tokens above the new burst are
    /// dropped so a lowered rate takes hold at once. Control path.
    public mutating func setRate(_ id: AllocationID, _ rate: UInt64, cause: RateCause) {
        guard isLive(id) else { return }
        let l = records + Int(id.slot)
        l.pointee.limiter.rate = rate
        l.pointee.limiter.cause = cause
        let burst = Int64(clamping: TokenBucket.burst(rate: rate, floor: LimiterState.byteBurstFloor))
        l.pointee.limiter.toPeer.tokens = min(l.pointee.limiter.toPeer.tokens, burst)
        l.pointee.limiter.toClient.tokens = min(l.pointee.limiter.toClient.tokens, burst)
    }

    /// Whether a live allocation offered traffic since the last
    /// `clearActivity`, and clears the mark. Control path (once a second).
    public mutating func takeActivity(_ id: AllocationID) -> Bool {
        guard isLive(id) else { return false }
        let was = records[Int(id.slot)].limiter.active
        records[Int(id.slot)].limiter.active = false
        return was
    }

    /// Every live allocation, for the once-a-second walk (control path).
    public func liveAllocations() -> [AllocationID] {
        var ids: [AllocationID] = []
        ids.reserveCapacity(count)
        for slot in 0..<limits.maxAllocations where records[slot].live {
            ids.append(AllocationID(slot: UInt32(slot), generation: records[slot].generation))
        }
        return ids
    }
}
