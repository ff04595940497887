import STUN
import Testing

@testable import TURN

/// The traffic limits (issue #15), driven by a made-up clock: no test here
/// waits or measures time.
@Suite("Traffic limits: token buckets, rates and policies")
struct RateLimitTests {
    let t0 = MonotonicTime.seconds(1000)

    func at(_ t: MonotonicTime, ms: UInt64) -> MonotonicTime { MonotonicTime(nanoseconds: t.nanoseconds + ms * 1_000_000) }

    @Test func bucketHoldsTheRateOverManySeconds() {
        // Offer twice the rate in 1000-byte packets every millisecond for
        // 10 s of made-up time: what passes is the rate times the time plus
        // at most one burst and one packet.
        let rate: UInt64 = 500_000
        let burst = TokenBucket.burst(rate: rate, floor: 4096)
        var b = TokenBucket(burst: burst, now: t0.nanoseconds)
        var passed: UInt64 = 0
        for ms in 0..<10_000 {
            if b.take(1000, rate: rate, burst: burst, now: at(t0, ms: UInt64(ms)).nanoseconds) { passed += 1000 }
        }
        #expect(passed <= rate * 10 + burst + 1000)
        #expect(passed >= rate * 10 - 1000)
    }

    @Test func packetLargerThanTheBurstPassesAndIsPaidBack() {
        var b = TokenBucket(burst: 4096, now: 0)
        check(b.take(60_000, rate: 10_000, burst: 4096, now: 0))
        check(!b.take(1, rate: 10_000, burst: 4096, now: 0))
        // The deficit (60000 - 4096) takes 5.59 s of refill at 10 kB/s.
        for s: UInt64 in 1...5 { check(!b.take(1, rate: 10_000, burst: 4096, now: s * 1_000_000_000)) }
        check(b.take(1, rate: 10_000, burst: 4096, now: 6_000_000_000))
    }

    @Test func fractionsOfATokenAreKept() {
        // 100 packets/s offered one every 15 ms: each call refills 1.5
        // tokens' time; the half must carry over, or a quarter of the rate is lost.
        var b = TokenBucket(burst: 1, now: 0)
        var passed = 0
        for i: UInt64 in 0..<400 where b.take(1, rate: 100, burst: 1, now: i * 15_000_000) { passed += 1 }
        // 6 s at 100/s, offered 66.7/s: all pass.
        #expect(passed == 400)
        var c = TokenBucket(burst: 1, now: 0)
        passed = 0
        for i: UInt64 in 0..<600 where c.take(1, rate: 100, burst: 1, now: i * 7_000_000) { passed += 1 }
        // 4.2 s at 100/s, offered 143/s: 420 pass (one more for the first token).
        #expect((419...421).contains(passed))
    }

    @Test func slowRatesStillRefill() {
        var b = TokenBucket(burst: 1, now: 0)
        check(b.take(1, rate: 3, burst: 1, now: 0))
        check(!b.take(1, rate: 3, burst: 1, now: 100_000_000))  // 0.3 token: not yet
        check(b.take(1, rate: 3, burst: 1, now: 400_000_000))  // 1.2 tokens since 0
    }

    @Test func eachDirectionHasItsOwnBucketAndDropsAreCounted() {
        var limits = RateLimits()
        limits.maxBytesPerSecond = 100_000
        var table = AllocationTable(limits: TableLimits(maxAllocations: 2), rateLimits: limits, now: t0)
        let (rate, cause) = limits.rate(userAllocations: 1, capacityShare: 0)
        #expect(rate == 100_000 && cause == .allocation)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0, rate: rate, cause: cause)!
        // Burst is a tenth of a second: 10 000 bytes each way.
        for _ in 0..<10 { check(table.admit(a, bytes: 1000, toPeer: true, now: t0) == .pass) }
        check(table.admit(a, bytes: 1000, toPeer: true, now: t0) == .bps)
        for _ in 0..<10 { check(table.admit(a, bytes: 1000, toPeer: false, now: t0) == .pass) }
        check(table.admit(a, bytes: 1000, toPeer: false, now: t0) == .bps)
        // 50 ms later, 5000 bytes more in each direction.
        let t1 = at(t0, ms: 50)
        for _ in 0..<5 { check(table.admit(a, bytes: 1000, toPeer: true, now: t1) == .pass) }
        check(table.admit(a, bytes: 1000, toPeer: true, now: t1) == .bps)
        check(table.drops(of: a)?.bps == 3)
        let removed = table.remove(a)
        #expect(removed?.drops.bps == 3 && removed?.drops.total == 3)
    }

    @Test func packetLimitCountsBothDirections() {
        var limits = RateLimits()
        limits.maxPacketsPerSecond = 50  // burst 5
        var table = AllocationTable(limits: TableLimits(maxAllocations: 1), rateLimits: limits, now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0)!
        for i in 0..<5 { check(table.admit(a, bytes: 10, toPeer: i % 2 == 0, now: t0) == .pass) }
        check(table.admit(a, bytes: 10, toPeer: false, now: t0) == .pps)
        check(table.admit(a, bytes: 10, toPeer: true, now: at(t0, ms: 20)) == .pass)  // one packet per 20 ms
        check(table.drops(of: a)?.pps == 1)
    }

    @Test func newPeerRate() {
        var limits = RateLimits()
        limits.maxNewPeersPerSecond = 2
        var table = AllocationTable(limits: TableLimits(maxAllocations: 1), rateLimits: limits, now: t0)
        let a = table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0)!
        check(table.admitNewPeers(2, in: a, now: t0))
        check(!table.admitNewPeers(1, in: a, now: t0))
        check(table.admitNewPeers(0, in: a, now: t0))  // refreshing known peers is free
        check(table.admitNewPeers(1, in: a, now: at(t0, ms: 500)))
        check(table.drops(of: a)?.peers == 1)
        check(table.peerRateRefusals == 1)
    }

    @Test func theLeastLimitSetsTheRateAndTheReason() {
        var limits = RateLimits()
        limits.maxBytesPerSecond = 1_000_000
        limits.userMaxBytesPerSecond = 1_500_000
        limits.capacityBytesPerSecond = 10_000_000
        limits.capacityPolicy = .share
        #expect(limits.rate(userAllocations: 1, capacityShare: 5_000_000) == (1_000_000, .allocation))
        #expect(limits.rate(userAllocations: 3, capacityShare: 5_000_000) == (500_000, .user))
        #expect(limits.rate(userAllocations: 1, capacityShare: 400_000) == (400_000, .capacity))
        // Share: capacity over the active allocations; one not yet counted is given what it would get.
        #expect(limits.capacityShare(active: 4, countedActive: true) == 2_500_000)
        #expect(limits.capacityShare(active: 4, countedActive: false) == 2_000_000)
        #expect(limits.capacityShare(active: 0, countedActive: true) == 10_000_000)
        #expect(RateLimits().rate(userAllocations: 1, capacityShare: 0) == (0, .none))
        #expect(!RateLimits().limitsPackets)
    }

    @Test func refuseReservesMaxBpsPerAllocation() {
        var limits = RateLimits()
        limits.maxBytesPerSecond = 300_000
        limits.capacityBytesPerSecond = 1_000_000
        #expect(limits.reservedAllocations == 3)
        limits.capacityPolicy = .share
        #expect(limits.reservedAllocations == nil)
    }

    @Test func loweringTheRateTakesHoldAtOnce() {
        var limits = RateLimits()
        limits.capacityBytesPerSecond = 1_000_000
        limits.capacityPolicy = .share
        var table = AllocationTable(limits: TableLimits(maxAllocations: 1), rateLimits: limits, now: t0)
        let a = table.create(
            fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0, rate: 1_000_000, cause: .capacity)!
        check(table.takeActivity(a) == false)
        table.setRate(a, 40_960, cause: .capacity)  // burst now 4096
        for _ in 0..<4 { check(table.admit(a, bytes: 1024, toPeer: true, now: t0) == .pass) }
        check(table.admit(a, bytes: 1024, toPeer: true, now: t0) == .capacity)
        check(table.takeActivity(a) == true)
        check(table.takeActivity(a) == false)
    }

    @Test func shareSplitsTheCapacityBetweenActiveAllocations() {
        // Two servers (workers) share one quota object, as workers do.
        var config = TURNConfiguration(credentials: CredentialStore(realm: "r"))
        config.rateLimits.capacityBytesPerSecond = 1_200_000
        config.rateLimits.capacityPolicy = .share
        config.limits = TableLimits(maxAllocations: 4)
        let quotas = AllocationQuotas()
        var w0 = TURNServer(configuration: config, quotas: quotas, now: t0)
        var w1 = TURNServer(configuration: config, quotas: quotas, now: t0)
        let a = w0.tables.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0)!
        let b = w0.tables.create(fiveTuple: tuple("198.51.100.2:1"), lifetime: 600, now: t0)!
        let c = w1.tables.create(fiveTuple: tuple("198.51.100.3:1"), lifetime: 600, now: t0)!
        let idle = w1.tables.create(fiveTuple: tuple("198.51.100.4:1"), lifetime: 600, now: t0)!
        for id in [a, b] { _ = w0.tables.admit(id, bytes: 1, toPeer: true, now: t0) }
        _ = w1.tables.admit(c, bytes: 1, toPeer: true, now: t0)
        w0.updateRates()  // publishes 2 active: 2 in all
        w1.updateRates()  // publishes 1 active: 3 in all; c gets a third, the idle one a quarter
        // w0's allocations offered nothing since its last count: 1 active
        // in all (w1's c), and each of a and b is given the share it would
        // get on becoming active again (a half).
        w0.updateRates()
        #expect(quotas.publishActive(delta: 0) == 1)
        check(w0.tables.rate(of: a)! == (600_000, .capacity))
        check(w1.tables.rate(of: c)! == (400_000, .capacity))
        check(w1.tables.rate(of: idle)! == (300_000, .capacity))
        w1.withdrawActive()
        #expect(quotas.publishActive(delta: 0) == 0)
    }
}

/// A reload's new traffic-limit values (`TURNServer.reconfigure`).
@Suite struct RateLimitReloadTests {
    @Test func newValuesApplyToLiveAllocationsButTurningALimitOffWaitsForARestart() throws {
        var h = Harness { $0.rateLimits.maxBytesPerSecond = 1_000 }
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        let found = h.server.allocation(for: c.fiveTuple)
        let id = try #require(found)
        let before = h.server.tables.rate(of: id)?.0
        #expect(before == 1_000)
        // A higher max-bps: the allocation made before takes it at once.
        var faster = h.server.configuration
        faster.rateLimits.maxBytesPerSecond = 50_000
        h.server.reconfigure(faster)
        #expect(h.server.tables.rate(of: id)?.0 == 50_000)
        #expect(h.server.configuration.rateLimits.maxBytesPerSecond == 50_000)
        // And a new allocation starts with it.
        var d = TestClient("198.51.100.9:40000")
        #expect(h.allocate(&d).isSuccess)
        let foundSecond = h.server.allocation(for: d.fiveTuple)
        let second = try #require(foundSecond)
        #expect(h.server.tables.rate(of: second)?.0 == 50_000)
        // Every limit off (a different set of limits on): kept as it runs.
        var off = h.server.configuration
        off.rateLimits = RateLimits()
        h.server.reconfigure(off)
        #expect(h.server.configuration.rateLimits.maxBytesPerSecond == 50_000)
        #expect(h.server.tables.rate(of: id)?.0 == 50_000)
        // A packet limit added beside the byte limit is another set too.
        var more = h.server.configuration
        more.rateLimits.maxPacketsPerSecond = 10
        #expect(h.server.configuration.rateLimits.canReload(to: more.rateLimits))
        var onlyPackets = RateLimits()
        onlyPackets.maxPacketsPerSecond = 10
        #expect(!h.server.configuration.rateLimits.canReload(to: onlyPackets))
    }
}
