import STUN
import Testing

@testable import TURN

/// `#expect` cannot take a noncopyable receiver apart, so checks on the
/// tables go through a plain Bool.
func check(_ condition: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(condition, comment, sourceLocation: sourceLocation)
}

func addr(_ s: String) -> TransportAddress { TransportAddress(s)! }
func tuple(_ client: String, _ server: String = "203.0.113.1:3478") -> FiveTuple {
    FiveTuple(client: addr(client), server: addr(server))
}

@Suite("Allocation, permission and channel tables")
struct AllocationTableTests {
    let t0 = MonotonicTime.seconds(1000)

    @Test func createLookupRemoveAndGenerations() {
        var table = AllocationTable(limits: TableLimits(maxAllocations: 2), now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1000"), lifetime: 600, now: t0)!
        let b = table.create(fiveTuple: tuple("198.51.100.2:1000"), lifetime: 600, now: t0)!
        check(table.create(fiveTuple: tuple("198.51.100.3:1000"), lifetime: 600, now: t0) == nil)  // full
        check(table.create(fiveTuple: tuple("198.51.100.1:1000"), lifetime: 600, now: t0) == nil)  // duplicate
        check(table.allocation(for: tuple("198.51.100.1:1000")) == a)
        check(table.allocation(for: tuple("198.51.100.1:1001")) == nil)
        check(table.allocation(for: tuple("198.51.100.1:1000", "203.0.113.1:3479")) == nil)
        check(table.count == 2)
        let removed = table.remove(a)
        #expect(removed?.fiveTuple == tuple("198.51.100.1:1000"))
        check(!table.isLive(a))
        check(table.remove(a) == nil)
        let c = table.create(fiveTuple: tuple("198.51.100.3:1000"), lifetime: 600, now: t0)!
        #expect(c.slot == a.slot && c.generation != a.generation)
        check(table.isLive(b) && table.isLive(c) && !table.isLive(a))
        #expect(AllocationID(packed: c.packed) == c)
    }

    @Test func expiryThroughTheWheel() {
        var table = AllocationTable(limits: TableLimits(maxAllocations: 8), now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 10, now: t0)!
        let b = table.create(fiveTuple: tuple("198.51.100.2:1"), lifetime: 20, now: t0)!
        let c = table.create(fiveTuple: tuple("198.51.100.3:1"), lifetime: 3600, now: t0)!
        check(table.nextExpired(now: .seconds(1009)) == nil)
        check(table.nextExpired(now: .seconds(1010))?.id == a)
        check(table.nextExpired(now: .seconds(1010)) == nil)
        table.refresh(b, lifetime: 100, now: .seconds(1015))
        check(table.nextExpired(now: .seconds(1100)) == nil)
        check(table.remainingLifetime(of: b, now: .seconds(1100)) == 15)
        // A long jump expires everything due, once.
        var gone: [AllocationID] = []
        while let r = table.nextExpired(now: .seconds(100_000)) { gone.append(r.id) }
        #expect(Set(gone) == [b, c])
        check(table.count == 0)
    }

    @Test func permissionsByIPWithLifetimeAndCap() {
        var table = AllocationTable(limits: TableLimits(maxAllocations: 4, maxPermissionsPerAllocation: 2), now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0)!
        let b = table.create(fiveTuple: tuple("198.51.100.2:1"), lifetime: 600, now: t0)!
        let p1 = IPAddress("8.8.8.8")!
        let p2 = IPAddress("2001:4860::1")!
        check(table.installPermission(p1, in: a, now: t0))
        check(table.isPermitted(p1, in: a, now: t0))
        check(!table.isPermitted(p1, in: b, now: t0))
        check(table.installPermission(p2, in: a, now: t0))
        check(!table.installPermission(IPAddress("1.1.1.1")!, in: a, now: t0))  // cap
        check(table.isPermitted(p1, in: a, now: .seconds(1299)))
        check(!table.isPermitted(p1, in: a, now: .seconds(1300)))  // 300 s
        check(table.installPermission(p1, in: a, now: .seconds(1200)))  // refresh
        check(table.isPermitted(p1, in: a, now: .seconds(1499)))
        check(table.installPermission(IPAddress("1.1.1.1")!, in: a, now: .seconds(1400)))  // p2 expired, swept
        check(table.permissionCount(of: a, now: .seconds(1400)) == 2)
        // Deleting the allocation drops its permissions; the reused slot starts clean.
        table.remove(a)
        check(!table.isPermitted(p1, in: a, now: .seconds(1400)))
        let c = table.create(fiveTuple: tuple("198.51.100.3:1"), lifetime: 600, now: .seconds(1400))!
        #expect(c.slot == a.slot)
        check(!table.isPermitted(p1, in: c, now: .seconds(1400)))
    }

    @Test func channelsBothWaysWithRebindRulesAndReservation() {
        var table = AllocationTable(limits: TableLimits(maxAllocations: 2, maxChannelsPerAllocation: 2), now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 3600, now: t0)!
        let peer = addr("8.8.8.8:5000")
        let peer2 = addr("8.8.8.8:5001")
        check(table.bindChannel(0x4000, to: peer, in: a, now: t0) == .bound)
        check(table.peer(forChannel: 0x4000, in: a, now: t0) == nil)  // no permission yet
        check(table.installPermission(peer.ip, in: a, now: t0))
        check(table.peer(forChannel: 0x4000, in: a, now: t0) == peer)
        check(table.channel(forPeer: peer, in: a, now: t0) == 0x4000)
        check(table.channel(forPeer: peer2, in: a, now: t0) == nil)
        check(table.bindChannel(0x4000, to: peer2, in: a, now: t0) == .numberTakenByOtherPeer)
        check(table.bindChannel(0x4001, to: peer, in: a, now: t0) == .peerHasOtherNumber)
        check(table.bindChannel(0x4000, to: peer, in: a, now: .seconds(1100)) == .bound)  // refresh
        check(table.bindChannel(0x4001, to: peer2, in: a, now: t0) == .bound)
        check(table.bindChannel(0x4002, to: addr("8.8.4.4:1"), in: a, now: t0) == .full)
        // Expired at 1700 (refreshed at 1100): not usable, still reserved until 2000.
        check(table.installPermission(peer.ip, in: a, now: .seconds(1650)))
        check(table.peer(forChannel: 0x4000, in: a, now: .seconds(1699)) == peer)
        check(table.peer(forChannel: 0x4000, in: a, now: .seconds(1700)) == nil)
        check(table.channel(forPeer: peer, in: a, now: .seconds(1700)) == nil)
        check(table.bindChannel(0x4000, to: peer2, in: a, now: .seconds(1999)) == .numberTakenByOtherPeer)
        check(table.bindChannel(0x4000, to: peer2, in: a, now: .seconds(2000)) == .bound)  // reservation over
        check(table.channel(forPeer: peer2, in: a, now: .seconds(2000)) == 0x4000)
        check(table.channel(forPeer: peer, in: a, now: .seconds(2000)) == nil)
    }

    @Test func counters() {
        var table = AllocationTable(limits: TableLimits(maxAllocations: 1), now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0)!
        table.countToPeer(a, bytes: 100)
        table.countToClient(a, bytes: 50)
        table.countToClient(a, bytes: 50)
        let c = table.counters(of: a)!
        #expect(c.packetsToPeer == 1 && c.bytesToPeer == 100 && c.packetsToClient == 2 && c.bytesToClient == 100)
        // No limits configured: everything passes.
        #expect(table.admit(a, bytes: 1_000_000, toPeer: true, now: t0) == .pass)
    }

    @Test func openTableSurvivesChurn() {
        // Insert/remove many keys so backward-shift deletion is exercised across wrap-around.
        var t = OpenTable<ChannelNumberKey, UInt32>(maxCount: 64, seed: 42)
        var model: [UInt32: UInt32] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let k = UInt32.random(in: 0..<200, using: &rng)
            let key = ChannelNumberKey(slot: k, number: 0x4000)
            if Bool.random(using: &rng) {
                if t.set(key, UInt32(step)) { model[k] = UInt32(step) } else { check(model.count == 64 && model[k] == nil) }
            } else {
                check(t.remove(key) == model.removeValue(forKey: k))
            }
            check(t.count == model.count)
        }
        for k in 0..<UInt32(200) { check(t.get(ChannelNumberKey(slot: k, number: 0x4000)) == model[k]) }
    }
}

@Suite("Quotas (486) across workers")
struct QuotaTests {
    @Test func perUserAndTotal() {
        let q = AllocationQuotas(perUser: 2, total: 3)
        #expect(q.acquire(user: "a"))
        #expect(q.acquire(user: "a"))
        #expect(!q.acquire(user: "a"))
        #expect(q.acquire(user: "b"))
        #expect(!q.acquire(user: "c"))  // total
        #expect(q.allocationCount == 3)
        q.release(user: "a")
        #expect(q.acquire(user: "c"))
        #expect(q.allocationCount(user: "a") == 1)
    }

    @Test func newLimitsMeetTheNextAllocateAndKeepTheAllocationsMade() {
        // Users counted from the start (a per-user quota may come later).
        let q = AllocationQuotas(countUsers: true)
        for _ in 0..<3 { #expect(q.acquire(user: "a")) }
        q.setLimits(perUser: 2, total: 0)
        #expect(q.perUser == 2 && q.total == 0)
        #expect(!q.acquire(user: "a"))  // 3 held, 2 allowed: nothing taken away, nothing new
        #expect(q.allocationCount(user: "a") == 3)
        #expect(q.acquire(user: "b"))
        q.setLimits(perUser: 0, total: 5)  // 4 held
        #expect(q.acquire(user: "a"))
        #expect(!q.acquire(user: "c"))  // the fifth was the last
        q.setLimits(perUser: 0, total: 0)
        #expect(q.acquire(user: "c"))
    }

    @Test func theTotalIsBoundedByWhatTheCapacityReserves() {
        var limits = RateLimits()
        #expect(AllocationQuotas.total(quota: 7, limits: limits) == 7)
        limits.maxBytesPerSecond = 100
        limits.capacityBytesPerSecond = 1000  // refuse: 10 allocations fit
        #expect(AllocationQuotas.total(quota: 0, limits: limits) == 10)
        #expect(AllocationQuotas.total(quota: 7, limits: limits) == 7)
        #expect(AllocationQuotas.total(quota: 70, limits: limits) == 10)
    }

    @Test func unlimited() {
        let q = AllocationQuotas()
        for _ in 0..<100 { #expect(q.acquire(user: "x")) }
    }
}
