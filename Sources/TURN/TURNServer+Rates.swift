// The control side of the traffic limits (RateLimits.swift): each
// allocation's byte rate at Allocate, and again once a second as users'
// allocation counts and the server's active allocations change.
extension TURNServer {
    /// The rate a new allocation of `quotaUser` starts with (its quota is
    /// already taken, so the user's count includes it).
    func initialRate(quotaUser: String) -> (UInt64, RateCause) {
        let limits = configuration.rateLimits
        guard limits.limitsPackets else { return (0, .none) }
        let users = limits.userMaxBytesPerSecond != 0 ? quotas.allocationCount(user: quotaUser) : 1
        return limits.rate(
            userAllocations: users, capacityShare: limits.capacityShare(active: serverActive, countedActive: false))
    }

    /// Once a second: counts this worker's allocations that offered traffic
    /// since the last call, publishes the change through `quotas` (the one
    /// shared counter, touched once a second per worker, never per packet),
    /// and sets every allocation's rate from the server-wide count and its
    /// user's allocations. Control path; a no-op without byte limits.
    public mutating func updateRates() {
        let limits = configuration.rateLimits
        guard limits.capacityBytesPerSecond != 0 || limits.userMaxBytesPerSecond != 0 else { return }
        let ids = tables.liveAllocations()
        var active: [Bool] = []
        active.reserveCapacity(ids.count)
        for id in ids { active.append(tables.takeActivity(id)) }
        let mine = active.lazy.filter { $0 }.count
        serverActive = quotas.publishActive(delta: mine - publishedActive)
        publishedActive = mine
        for (id, isActive) in zip(ids, active) { setRate(of: id, under: limits, countedActive: isActive) }
    }

    /// Sets a live allocation's byte rate under `limits`, from its user's
    /// allocations and the server-wide active count (`countedActive`: that
    /// count includes it).
    private mutating func setRate(of id: AllocationID, under limits: RateLimits, countedActive: Bool) {
        let users =
            limits.userMaxBytesPerSecond != 0 ? quotas.allocationCount(user: owners[Int(id.slot)].quotaUser) : 1
        let (rate, cause) = limits.rate(
            userAllocations: users,
            capacityShare: limits.capacityShare(active: serverActive, countedActive: countedActive))
        tables.setRate(id, rate, cause: cause)
    }

    /// A reload changed the traffic limits' values (`RateLimits.canReload`):
    /// every live allocation takes its rate under the new ones at once
    /// (its buckets keep their tokens, capped at the new burst). Control path.
    mutating func applyRateLimits(_ limits: RateLimits) {
        tables.rateLimits = limits
        for id in tables.liveAllocations() { setRate(of: id, under: limits, countedActive: true) }
    }

    /// Takes this worker's active allocations out of the server-wide count
    /// (the worker is stopping).
    public mutating func withdrawActive() {
        serverActive = quotas.publishActive(delta: -publishedActive)
        publishedActive = 0
    }
}
