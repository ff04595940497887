import STUN
import Testing

@testable import TURN

/// 300 ALTERNATE-SERVER under `--alternate-server-policy`.
@Suite struct AlternateServerTests {
    static let v4a = TransportAddress("192.0.2.5:3478")!
    static let v4b = TransportAddress("192.0.2.6:3479")!
    static let v6 = TransportAddress("[2001:db8::5]:3478")!

    static func harness(_ policy: AlternatePolicy, quotas: AllocationQuotas = AllocationQuotas()) -> Harness {
        Harness(quotas: quotas) { $0.alternates = AlternateServers(servers: [v4a, v6, v4b], policy: policy) }
    }

    @Test func alwaysTakesTurnsAmongTheClientsFamily() {
        var h = Self.harness(.always)
        var seen: [TransportAddress?] = []
        for i in 0..<4 {
            var c = TestClient("198.51.100.7:\(40000 + i)")
            let r = h.allocate(&c)
            #expect(r.errorCode == 300)
            #expect(r.verifies(c.key))
            seen.append(r.with { $0.alternateServer })
        }
        #expect(seen == [Self.v4a, Self.v4b, Self.v4a, Self.v4b])
        var c6 = TestClient("[2001:db8:9::1]:5000", server: "[2001:db8::1]:3478")
        #expect(h.allocate(&c6).with { $0.alternateServer } == Self.v6)
    }

    @Test func noAlternateOfTheFamilyServesHere() {
        var h = Harness { $0.alternates = AlternateServers(servers: [Self.v6], policy: .always) }
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
    }

    @Test func drainingRedirectsOnlyWhileDraining() {
        var h = Self.harness(.draining)
        var a = TestClient("198.51.100.7:1")
        #expect(h.allocate(&a).isSuccess)
        let whenDraining = h.server.redirectsWhileDraining(a.fiveTuple.client)
        #expect(whenDraining)
        h.server.draining = true
        var b = TestClient("198.51.100.7:2")
        let r = h.allocate(&b)
        #expect(r.errorCode == 300)
        // The allocation already made keeps working.
        #expect(h.refresh(a, lifetime: 600).isSuccess)
    }

    @Test func allocationsThresholdCountsTheWholeServer() {
        let quotas = AllocationQuotas()
        var h = Self.harness(.allocations(2), quotas: quotas)
        var a = TestClient("198.51.100.7:1")
        var b = TestClient("198.51.100.7:2")
        var c = TestClient("198.51.100.7:3")
        #expect(h.allocate(&a).isSuccess)
        #expect(h.allocate(&b).isSuccess)
        #expect(h.allocate(&c).errorCode == 300)
        // Below the threshold again: served here.
        #expect(h.refresh(a, lifetime: 0).isSuccess)
        #expect(h.allocate(&c).isSuccess)
        // Another worker's allocations count too (the quotas are shared).
        #expect(quotas.acquire(user: "other"))
        var d = TestClient("198.51.100.7:4")
        #expect(h.allocate(&d).errorCode == 300)
    }

    @Test func policiesParse() {
        #expect(AlternatePolicy(parsing: "always") == .always)
        #expect(AlternatePolicy(parsing: "draining") == .draining)
        #expect(AlternatePolicy(parsing: "allocations:100") == .allocations(100))
        #expect(AlternatePolicy(parsing: "allocations:") == nil)
        #expect(AlternatePolicy(parsing: "allocations:-1") == nil)
        #expect(AlternatePolicy(parsing: "sometimes") == nil)
    }
}
