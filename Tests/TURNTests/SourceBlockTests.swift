import STUN
import Testing

@testable import TURN

/// How long the kernel source filter may drop a source after the limiter
/// dropped one of its requests (`TURNServer.sourceBlockNanoseconds`): until
/// the bucket that refused holds a token again, within 1 ms .. 1 s. The
/// clock is the harness's; nothing here measures time.
@Suite struct SourceBlockTests {
    static func limited(failed: UInt64 = 0, binding: UInt64 = 0, total: UInt64 = 0) -> Harness {
        Harness {
            $0.sourceLimits = SourceRateLimits(
                failedPerSecond: failed, bindingPerSecond: binding, failedTotalPerSecond: total)
        }
    }

    func unsignedAllocate(_ c: TestClient) -> [UInt8] {
        c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
    }

    func binding(_ c: TestClient) -> [UInt8] { c.request(.binding, sign: false) }

    /// Sends until the limiter drops one; returns the drop's reason.
    func exhaust(_ h: inout Harness, _ c: TestClient, _ make: (TestClient) -> [UInt8]) -> DropReason? {
        for _ in 0..<20_001 {
            if case .dropped(let reason) = h.send(make(c), from: c).outcome.effect { return reason }
        }
        return nil
    }

    @Test func aRefusedSourceIsBlockedUntilItsBucketRefills() {
        var h = Self.limited(failed: 4)  // burst 8: a token each 250 ms
        let c = TestClient("198.51.100.7:40000")
        let reason = exhaust(&h, c, unsignedAllocate)
        #expect(reason == .rateLimitedUnauthenticated)
        // The bucket was just emptied at `now`: one token is a quarter second away.
        let block = h.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: h.now)
        #expect(block == 250_000_000)
        // 100 ms later, 150 ms are left.
        let later = MonotonicTime(nanoseconds: h.now.nanoseconds + 100_000_000)
        #expect(
            h.server.sourceBlockNanoseconds(after: .rateLimitedCredentials, from: c.fiveTuple, now: later)
                == 150_000_000)
        // When the block ends, the source is answered again (one refusal).
        h.now = MonotonicTime(nanoseconds: h.now.nanoseconds + block)
        #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401)
        #expect(h.send(unsignedAllocate(c), from: c).isEmpty)
    }

    @Test func blocksAreClampedToAMillisecondAndASecond() {
        // 5000 refusals/s: a token each 200 µs, blocked for the 1 ms floor.
        var fast = Self.limited(failed: 5000)
        let c = TestClient("198.51.100.7:40000")
        #expect(exhaust(&fast, c, unsignedAllocate) == .rateLimitedUnauthenticated)
        #expect(
            fast.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: fast.now)
                == 1_000_000)
        // Well past the refill: the bucket holds tokens, nothing to block.
        let much = MonotonicTime(nanoseconds: fast.now.nanoseconds + 10_000_000)
        #expect(
            fast.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: much) == 0)
        // 1 refusal/s: a token is a second away, the longest a block lasts.
        var slow = Self.limited(failed: 1)
        #expect(exhaust(&slow, c, unsignedAllocate) == .rateLimitedUnauthenticated)
        #expect(
            slow.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: slow.now)
                == 1_000_000_000)
    }

    @Test func theWorkerTotalBlocksUntilItRefills() {
        // Only the worker's total bucket limits: 2/s, burst 4.
        var h = Self.limited(total: 2)
        let a = TestClient("198.51.100.7:40000")
        let b = TestClient("198.51.100.8:40000")
        for _ in 0..<2 { #expect(h.send(unsignedAllocate(a), from: a).errorCode == 401) }
        for _ in 0..<2 { #expect(h.send(unsignedAllocate(b), from: b).errorCode == 401) }
        #expect(h.send(unsignedAllocate(b), from: b).outcome.effect == .dropped(.rateLimitedUnauthenticated))
        #expect(
            h.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: b.fiveTuple, now: h.now)
                == 500_000_000)
    }

    @Test func bindingDropsWaitForTheBindingBucket() {
        var h = Self.limited(failed: 100, binding: 2)  // Binding: burst 4, a token each 500 ms
        let c = TestClient("198.51.100.7:40000")
        #expect(exhaust(&h, c, binding) == .rateLimitedBinding)
        #expect(
            h.server.sourceBlockNanoseconds(after: .rateLimitedBinding, from: c.fiveTuple, now: h.now) == 500_000_000)
        // The refusal buckets are full: a refusal drop would not block.
        #expect(h.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: h.now) == 0)
    }

    @Test func otherReasonsAllocationsAndLimitsOffNeverBlock() {
        var h = Self.limited(failed: 1)
        var c = TestClient("198.51.100.7:40000")
        #expect(h.server.sourceBlockNanoseconds(after: .malformed, from: c.fiveTuple, now: h.now) == 0)
        // An allocation's 5-tuple is never limited, so never blocked.
        #expect(h.allocate(&c).isSuccess)
        _ = exhaust(&h, TestClient("198.51.100.7:40001"), unsignedAllocate)
        #expect(h.server.sourceBlockNanoseconds(after: .rateLimitedCredentials, from: c.fiveTuple, now: h.now) == 0)
        // With every limit off nothing is blocked.
        var off = Self.limited()
        #expect(
            off.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: off.now) == 0)
    }

    @Test func unansweredDatagramsBlockPastTheirOwnBucketAndLeaveTheRefusalsAlone() {
        var h = Self.limited(failed: 4)  // burst 8: a token each 250 ms
        let c = TestClient("198.51.100.7:40000")
        for _ in 0..<8 { #expect(h.server.unansweredBlockNanoseconds(from: c.fiveTuple, now: h.now) == 0) }
        // The ninth finds the bucket empty: a quarter second to the next token.
        #expect(h.server.unansweredBlockNanoseconds(from: c.fiveTuple, now: h.now) == 250_000_000)
        let later = MonotonicTime(nanoseconds: h.now.nanoseconds + 50_000_000)
        #expect(h.server.unansweredBlockNanoseconds(from: c.fiveTuple, now: later) == 200_000_000)
        // Another port of the host shares the bucket (it is the address's).
        let sibling = TestClient("198.51.100.7:40001")
        #expect(h.server.unansweredBlockNanoseconds(from: sibling.fiveTuple, now: later) > 0)
        // The refusal bucket is untouched: the source still gets its 401s.
        #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401)
        #expect(h.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: c.fiveTuple, now: h.now) == 0)
    }

    @Test func unansweredDatagramsOfAnAllocationOrWithTheLimitsOffNeverBlock() {
        var h = Self.limited(failed: 1)
        var c = TestClient("198.51.100.7:40000")
        #expect(h.allocate(&c).isSuccess)
        for _ in 0..<10 { #expect(h.server.unansweredBlockNanoseconds(from: c.fiveTuple, now: h.now) == 0) }
        // Only the refusal rate sets this bucket's: with it off, nothing blocks.
        var bindingOnly = Self.limited(binding: 5, total: 5)
        let d = TestClient("198.51.100.8:40000")
        for _ in 0..<20 {
            #expect(bindingOnly.server.unansweredBlockNanoseconds(from: d.fiveTuple, now: bindingOnly.now) == 0)
        }
    }

    @Test func untilTokenCountsTheDeficitAndTheTimeSinceTheLastRefill() {
        var bucket = TokenBucket(burst: 0, now: 1_000)
        // Empty at t=1000, 3 per second: one token at 1000 + ceil(10⁹/3).
        #expect(SourceRateLimiter.untilToken(bucket, rate: 3, now: 1_000) == 333_333_334)
        #expect(SourceRateLimiter.untilToken(bucket, rate: 3, now: 1_000 + 333_333_334) == 0)
        // Two tokens in debt: three tokens' time.
        bucket.tokens = -2
        #expect(SourceRateLimiter.untilToken(bucket, rate: 1000, now: 1_000) == 3_000_000)
        bucket.tokens = 1
        #expect(SourceRateLimiter.untilToken(bucket, rate: 1000, now: 1_000) == 0)
    }
}
