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

    /// Byte streams (TCP and TLS clients, RFC 6062 data connections): the
    /// bytes were read already and are never dropped; instead the reader
    /// stops reading while the bucket is empty, so TCP slows the sender.
    /// Charges `bytes` to the allocation's byte rate in the direction given
    /// even when that takes the bucket below zero, and says whether tokens
    /// are left (false: pause reading until `resumeDelay` says so). Always
    /// true without a byte limit, or for a stale id. Data path: no
    /// allocation, no reference counting.
    @inline(__always)
    public mutating func charge(_ id: AllocationID, bytes: Int, toPeer: Bool, now: MonotonicTime) -> Bool {
        guard limitsPackets, isLive(id) else { return true }
        let r = records + Int(id.slot)
        r.pointee.limiter.active = true
        let rate = r.pointee.limiter.rate
        guard rate != 0 else { return true }
        let burst = TokenBucket.burst(rate: rate, floor: LimiterState.byteBurstFloor)
        return toPeer
            ? r.pointee.limiter.toPeer.charge(UInt64(bytes), rate: rate, burst: burst, now: now.nanoseconds)
            : r.pointee.limiter.toClient.charge(UInt64(bytes), rate: rate, burst: burst, now: now.nanoseconds)
    }

    /// `--max-pps` alone, for a packet read from a byte stream (its bytes go
    /// through `charge`): false (counted) when over it, and the packet is dropped.
    @inline(__always)
    public mutating func admitPacket(_ id: AllocationID, now: MonotonicTime) -> Bool {
        let pps = rateLimits.maxPacketsPerSecond
        guard pps != 0, isLive(id) else { return true }
        let r = records + Int(id.slot)
        guard r.pointee.limiter.packets.take(1, rate: pps, burst: TokenBucket.burst(rate: pps, floor: 1), now: now.nanoseconds)
        else {
            r.pointee.limiter.drops.count(.pps)
            return false
        }
        return true
    }

    /// Nanoseconds until a reader paused by `charge` may read again (0: now;
    /// also for a stale id or a rate lifted meanwhile): until the bucket of
    /// that direction is half full again. Waiting for half a burst (50 ms
    /// of the rate) rather than one token lets the reader take several
    /// buffers per wake-up; the long-run rate is the same, since every byte
    /// read is charged. Control path (a paused reader's timer).
    public mutating func resumeDelay(_ id: AllocationID, toPeer: Bool, now: MonotonicTime) -> UInt64 {
        guard limitsPackets, isLive(id) else { return 0 }
        let r = records + Int(id.slot)
        let rate = r.pointee.limiter.rate
        guard rate != 0 else { return 0 }
        let burst = TokenBucket.burst(rate: rate, floor: LimiterState.byteBurstFloor)
        let level = Int64(clamping: max(1, burst / 2))
        return toPeer
            ? r.pointee.limiter.toPeer.delay(untilLevel: level, rate: rate, burst: burst, now: now.nanoseconds)
            : r.pointee.limiter.toClient.delay(untilLevel: level, rate: rate, burst: burst, now: now.nanoseconds)
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
