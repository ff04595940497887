import STUN
import Testing

@testable import TURN

/// Byte streams under the traffic limits: charged whether or not the bucket
/// holds tokens (the bytes were read and are never dropped), with the
/// reader told to pause and when to resume. A made-up clock: no test here
/// waits or measures time.
@Suite("Traffic limits: charging byte streams")
struct StreamChargeTests {
    let t0 = MonotonicTime.seconds(1000)

    func at(_ t: MonotonicTime, ms: UInt64) -> MonotonicTime { MonotonicTime(nanoseconds: t.nanoseconds + ms * 1_000_000) }

    func limitedTable(_ configure: (inout RateLimits) -> Void) -> AllocationTable {
        var limits = RateLimits()
        configure(&limits)
        return AllocationTable(limits: TableLimits(maxAllocations: 2), rateLimits: limits, now: t0)
    }

    /// An allocation at the rate the table's limits give it.
    func allocate(_ table: inout AllocationTable) -> AllocationID {
        let (rate, cause) = table.rateLimits.rate(userAllocations: 1, capacityShare: 0)
        return table.create(fiveTuple: tuple("198.51.100.1:1"), lifetime: 600, now: t0, rate: rate, cause: cause)!
    }

    @Test func chargeTakesEverythingAndSaysWhenTheBucketIsEmpty() {
        var b = TokenBucket(burst: 4096, now: 0)
        check(b.charge(3000, rate: 10_000, burst: 4096, now: 0))
        // The bucket holds 1096: a 4000-byte read still goes, and empties it.
        check(!b.charge(4000, rate: 10_000, burst: 4096, now: 0))
        #expect(b.tokens == 1096 - 4000)
        // Charging an empty bucket still charges (the deficit grows).
        check(!b.charge(1000, rate: 10_000, burst: 4096, now: 0))
        #expect(b.tokens == 1096 - 5000)
    }

    @Test func delayIsTheTimeToRefillToTheLevel() {
        var b = TokenBucket(burst: 4096, now: 0)
        _ = b.charge(4096 + 5000, rate: 10_000, burst: 4096, now: 0)
        // 5000 short of zero, 7048 short of 2048: 0.7048 s at 10 kB/s.
        #expect(b.delay(untilLevel: 2048, rate: 10_000, burst: 4096, now: 0) == 704_800_000)
        // Half a second later 5000 tokens came back: 2048 short of 2048.
        #expect(b.delay(untilLevel: 2048, rate: 10_000, burst: 4096, now: 500_000_000) == 204_800_000)
        // At the level: no wait; the bucket never refills above its burst.
        #expect(b.delay(untilLevel: 2048, rate: 10_000, burst: 4096, now: 710_000_000) == 0)
        #expect(b.delay(untilLevel: 2048, rate: 10_000, burst: 4096, now: 60_000_000_000) == 0)
        #expect(b.tokens == 4096)
    }

    @Test func streamsAreChargedInTheirDirectionAndNeverDropped() {
        var table = limitedTable { $0.maxBytesPerSecond = 100_000 }
        let a = allocate(&table)
        // Burst 10 000 each way: a 16 KiB read passes and pauses the reader.
        check(table.charge(a, bytes: 6000, toPeer: true, now: t0))
        check(!table.charge(a, bytes: 16_384, toPeer: true, now: t0))
        // The other direction has its own bucket: 4000 taken, 6000 left,
        // above half the burst (5000): no wait; 2000 more and there is one.
        check(table.charge(a, bytes: 4000, toPeer: false, now: t0))
        #expect(table.resumeDelay(a, toPeer: false, now: t0) == 0)
        check(table.charge(a, bytes: 2000, toPeer: false, now: t0))
        #expect(table.resumeDelay(a, toPeer: false, now: t0) == 10_000_000)
        // To peer: 12 384 short of 0, 17 384 short of half the burst: 173.84 ms.
        #expect(table.resumeDelay(a, toPeer: true, now: t0) == 173_840_000)
        #expect(table.resumeDelay(a, toPeer: true, now: at(t0, ms: 100)) == 73_840_000)
        #expect(table.resumeDelay(a, toPeer: true, now: at(t0, ms: 174)) == 0)
        // Nothing counted as dropped: the bytes went through.
        #expect(table.drops(of: a)?.total == 0)
        // The UDP path shares the same bucket: at 174 ms it holds 5016
        // tokens, so a 1000-byte datagram passes; once the reader has taken
        // the rest, datagrams are dropped again.
        check(table.admit(a, bytes: 1000, toPeer: true, now: at(t0, ms: 174)) == .pass)
        check(!table.charge(a, bytes: 16_384, toPeer: true, now: at(t0, ms: 174)))
        check(table.admit(a, bytes: 1000, toPeer: true, now: at(t0, ms: 174)) == .bps)
    }

    @Test func packetRateStillDropsStreamPackets() {
        var table = limitedTable { $0.maxPacketsPerSecond = 2 }
        let a = allocate(&table)
        // Burst: one packet (a tenth of a second's worth, at least one).
        check(table.admitPacket(a, now: t0))
        check(!table.admitPacket(a, now: t0))
        check(table.admitPacket(a, now: at(t0, ms: 500)))
        #expect(table.drops(of: a)?.pps == 1)
        // No byte limit: bytes are never paused.
        check(table.charge(a, bytes: 1 << 30, toPeer: true, now: t0))
        #expect(table.resumeDelay(a, toPeer: true, now: t0) == 0)
    }

    @Test func staleAndUnlimitedAllocationsNeverPause() {
        var table = limitedTable { $0.maxBytesPerSecond = 100_000 }
        let a = allocate(&table)
        _ = table.remove(a)
        check(table.charge(a, bytes: 1 << 20, toPeer: true, now: t0))
        #expect(table.resumeDelay(a, toPeer: true, now: t0) == 0)
        var open = limitedTable { _ in }
        let b = allocate(&open)
        check(open.charge(b, bytes: 1 << 30, toPeer: false, now: t0))
        #expect(open.resumeDelay(b, toPeer: false, now: t0) == 0)
    }

    @Test func aLoweredRateTakesTheBucketDownAndTheReaderWaitsLonger() {
        var table = limitedTable { $0.maxBytesPerSecond = 100_000 }
        let a = allocate(&table)
        check(!table.charge(a, bytes: 10_000, toPeer: true, now: t0))
        #expect(table.resumeDelay(a, toPeer: true, now: t0) == 50_000_000)  // 5000 at 100 kB/s
        table.setRate(a, 10_000, cause: .user)
        // Burst 4096 (the floor), level 2048 at 10 kB/s: 204.8 ms.
        #expect(table.resumeDelay(a, toPeer: true, now: t0) == 204_800_000)
    }
}
