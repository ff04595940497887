import STUN
import Testing

@testable import TURN

/// The per-source request limits (`SourceRateLimiter` through `handleSTUN`).
@Suite struct SourceRateLimitTests {
    static func limited(failed: UInt64 = 2, binding: UInt64 = 0, total: UInt64 = 0) -> Harness {
        Harness { $0.sourceLimits = SourceRateLimits(failedPerSecond: failed, bindingPerSecond: binding, failedTotalPerSecond: total) }
    }

    func unsignedAllocate(_ c: TestClient) -> [UInt8] {
        c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
    }

    @Test func refusalsPastTheBurstAreDroppedUnanswered() {
        var h = Self.limited(failed: 2)  // burst 4
        let c = TestClient("198.51.100.7:40000")
        for _ in 0..<4 { #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401) }
        let r = h.send(unsignedAllocate(c), from: c)
        #expect(r.isEmpty)
        #expect(r.outcome.effect == .dropped(.rateLimitedUnauthenticated))
        // Another port of the same address is the same source.
        let other = TestClient("198.51.100.7:40001")
        #expect(h.send(unsignedAllocate(other), from: other).outcome.effect == .dropped(.rateLimitedUnauthenticated))
        // Another address is not.
        let stranger = TestClient("198.51.100.8:40000")
        #expect(h.send(unsignedAllocate(stranger), from: stranger).errorCode == 401)
        // Half a second refills one token (2 per second).
        h.now = h.now.adding(seconds: 1)
        #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401)
        #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401)
        #expect(h.send(unsignedAllocate(c), from: c).isEmpty)
    }

    @Test func signedRequestsOverTheLimitSkipTheIntegrityCheck() {
        var h = Self.limited(failed: 1)  // burst 2
        var c = TestClient()
        h.learnNonce(&c)
        c.password = "wrong"
        #expect(h.allocate(&c).errorCode == 401)
        let r = h.allocate(&c)
        #expect(r.outcome.effect == .dropped(.rateLimitedCredentials))
        // Even the right password waits for the bucket: no HMAC is run for it.
        c.password = "secret"
        #expect(h.allocate(&c).outcome.effect == .dropped(.rateLimitedCredentials))
        h.now = h.now.adding(seconds: 2)
        #expect(h.allocate(&c).isSuccess)
    }

    @Test func successesCostNothing() {
        var h = Self.limited(failed: 1)
        // One challenge each, then success: ten logins from one address.
        for port in 0..<10 {
            var c = TestClient("198.51.100.7:\(41000 + port)")
            h.now = h.now.adding(seconds: 1)  // one challenge a second is the rate
            #expect(h.allocate(&c).isSuccess, "login \(port)")
        }
    }

    @Test func anAllocationsOwnRequestsAreNeverLimited() {
        var h = Self.limited(failed: 1)
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        // Use up the source's refusals from another port.
        let junk = TestClient("198.51.100.7:40999")
        while !h.send(unsignedAllocate(junk), from: junk).isEmpty {}
        // The allocation's 5-tuple still gets answers, refusals included.
        #expect(h.refresh(c, lifetime: 600).isSuccess)
        #expect(h.send(c.request(.refresh, sign: false), from: c).errorCode == 401)
        #expect(h.send(c.request(.refresh, sign: false), from: c).errorCode == 401)
        #expect(h.send(c.request(.refresh, sign: false), from: c).errorCode == 401)
        #expect(h.createPermission(c, ["192.0.2.20:9000"]).isSuccess)
    }

    @Test func unparsableRequestsCountAndAreDropped() {
        var h = Self.limited(failed: 1)
        let c = TestClient()
        // A sound header, an attribute running past the end: 400 while tokens last.
        var bad = TestClient().request(.allocate, sign: false)
        bad += [0x80, 0x22, 0x00, 0x40]  // SOFTWARE claiming 64 bytes, none there
        bad[3] = UInt8(bad.count - 20)
        #expect(h.send(bad, from: c).errorCode == 400)
        #expect(h.send(bad, from: c).errorCode == 400)
        #expect(h.send(bad, from: c).outcome.effect == .dropped(.rateLimitedMalformed))
        // Unknown methods get 400 and count too.
        #expect(h.send(c.request(STUNMethod(rawValue: 0x0FF), sign: false), from: c).outcome.effect
            == .dropped(.rateLimitedUnauthenticated))
    }

    @Test func bindingHasItsOwnLimit() {
        var h = Self.limited(failed: 1, binding: 3)  // Binding burst 6
        let c = TestClient()
        for _ in 0..<6 { #expect(h.send(c.request(.binding, sign: false), from: c).isSuccess) }
        #expect(h.send(c.request(.binding, sign: false), from: c).outcome.effect == .dropped(.rateLimitedBinding))
        // Binding does not spend the refusal tokens.
        #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401)
    }

    @Test func theWorkerTotalBoundsManySources() {
        var h = Self.limited(failed: 100, total: 2)  // total burst 4
        var answered = 0
        for i in 0..<20 {
            let c = TestClient("198.51.100.\(i + 1):5000")
            if !h.send(unsignedAllocate(c), from: c).isEmpty { answered += 1 }
        }
        #expect(answered == 4)
    }

    @Test func ipv6SourcesShareTheirSlash64() {
        var h = Self.limited(failed: 1)
        for i in 0..<2 {
            let c = TestClient("[2001:db8:1:2::\(i + 1)]:5000", server: "[2001:db8::1]:3478")
            #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401)
        }
        let same64 = TestClient("[2001:db8:1:2::99]:5000", server: "[2001:db8::1]:3478")
        #expect(h.send(unsignedAllocate(same64), from: same64).isEmpty)
        let other64 = TestClient("[2001:db8:1:3::1]:5000", server: "[2001:db8::1]:3478")
        #expect(h.send(unsignedAllocate(other64), from: other64).errorCode == 401)
    }

    @Test func offMeansNoLimit() {
        var h = Harness()
        let c = TestClient()
        for _ in 0..<100 { #expect(h.send(unsignedAllocate(c), from: c).errorCode == 401) }
    }

    @Test func aFullTableEvictsWithoutGrowing() {
        let buckets = SourceBuckets(slotsPerKind: 8)
        #expect(buckets.slotsPerKind == 8)
        var limiter = SourceRateLimiter(
            limits: SourceRateLimits(failedPerSecond: 1), buckets: buckets.view, now: MonotonicTime.seconds(1))
        let now = MonotonicTime.seconds(1)
        var admitted = 0
        for i in 0..<1000 {
            let ip = IPAddress(v4: 0x0A00_0000 + UInt32(i))
            if limiter.mayRefuse(ip, now: now) { admitted += 1 }
            limiter.chargeRefusal(ip, now: now)
        }
        #expect(admitted == 1000)  // each new source starts with a full bucket
        // The last source is still known, and still has one of its two tokens.
        let last = IPAddress(v4: 0x0A00_0000 + 999)
        let first = limiter.mayRefuse(last, now: now)
        limiter.chargeRefusal(last, now: now)
        let second = limiter.mayRefuse(last, now: now)
        #expect(first && !second)
    }

    @Test func workersShareASourcesBudget() {
        // Two workers (two servers on one table): a source whose ports hash
        // to both gets its burst once, not once per worker.
        let shared = SourceBuckets()
        let limits = SourceRateLimits(failedPerSecond: 2)  // burst 4
        var a = Harness(sources: shared) { $0.sourceLimits = limits }
        var b = Harness(sources: shared) { $0.sourceLimits = limits }
        let onA = TestClient("198.51.100.7:40000")
        let onB = TestClient("198.51.100.7:40001")
        var answered = 0
        for _ in 0..<10 {
            if !a.send(unsignedAllocate(onA), from: onA).isEmpty { answered += 1 }
            if !b.send(unsignedAllocate(onB), from: onB).isEmpty { answered += 1 }
        }
        #expect(answered == 4)
        // A table of its own per server (as before) would have answered 8.
        var c = Harness { $0.sourceLimits = limits }
        var d = Harness { $0.sourceLimits = limits }
        var apart = 0
        for _ in 0..<10 {
            if !c.send(unsignedAllocate(onA), from: onA).isEmpty { apart += 1 }
            if !d.send(unsignedAllocate(onB), from: onB).isEmpty { apart += 1 }
        }
        #expect(apart == 8)
    }

    @Test func concurrentTakesNeverExceedTheBurst() async {
        // Four threads take from one source's bucket at the same instant:
        // the compare-and-exchange loop hands out the burst exactly once.
        let buckets = SourceBuckets()
        let ip = IPAddress(v4: 0xC633_6407)
        let now = MonotonicTime.seconds(50)
        let rate: UInt64 = 500  // burst 1,000
        let taken = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let view = buckets.view
                    var n = 0
                    for _ in 0..<5_000 where view.take(.binding, ip, rate: rate, now: now) { n += 1 }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        #expect(taken == 1_000)
    }

    @Test func aBucketReadsFullAfterTheClockWraps() {
        let buckets = SourceBuckets()
        let view = buckets.view
        let ip = IPAddress(v4: 0xC633_6407)
        let start = MonotonicTime.seconds(100)
        for _ in 0..<4 { #expect(view.take(.refusal, ip, rate: 2, now: start)) }
        #expect(!view.take(.refusal, ip, rate: 2, now: start))
        #expect(view.untilToken(.refusal, ip, rate: 2, now: start) == 500_000_000)
        // 2⁴⁴ µs (203 days) less three seconds later, the stored arrival
        // time (two seconds ahead, modulo 2⁴⁴) looks five seconds ahead:
        // no live bucket is, so it reads as full.
        let wrapped = MonotonicTime(nanoseconds: start.nanoseconds + ((1 << 44) - 3_000_000) * 1000)
        #expect(view.untilToken(.refusal, ip, rate: 2, now: wrapped) == 0)
        #expect(view.take(.refusal, ip, rate: 2, now: wrapped))
    }
}
