import STUN
import Testing

@testable import TURN

/// Appends ORIGIN (0x802F) with `value`.
func appendOrigin(_ e: inout STUNEncoder, _ value: String) throws(STUNError) {
    try e.append(.origin, utf8: value)
}

@Suite("coturn's service switches in the state machine")
struct ServiceOptionTests {
    @Test("--no-stun: Binding is dropped unanswered, TURN still works")
    func noSTUN() {
        var h = Harness { $0.answersBinding = false }
        var c = TestClient()
        let r = h.send(c.request(.binding, sign: false), from: c)
        #expect(r.isEmpty && r.outcome.effect == .dropped(.serviceOff))
        #expect(h.allocate(&c).isSuccess)
    }

    @Test("--stun-only: Binding answered; TURN requests and Send indications dropped unanswered")
    func stunOnly() {
        var h = Harness { $0.stunOnly = true }
        let c = TestClient()
        #expect(h.send(c.request(.binding, sign: false), from: c).isSuccess)
        for method in [STUNMethod.allocate, .refresh, .createPermission, .channelBind] {
            let r = h.send(c.request(method, sign: false), from: c)
            #expect(r.isEmpty && r.outcome.effect == .dropped(.serviceOff))
        }
        // A broken TURN request is not answered with 400 either.
        var bad = c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
        bad[22] = 0xFF
        #expect(h.send(bad, from: c).isEmpty)
        let send = h.send(c.request(.send, sign: false, cls: .indication), from: c)
        #expect(send.isEmpty && send.outcome.effect == .dropped(.serviceOff))
        #expect(h.allocationCount == 0)
    }

    @Test("--secure-stun: Binding gets 401 with a nonce, then a signed answer")
    func secureSTUN() {
        var h = Harness { $0.authenticatesBinding = true }
        var c = TestClient()
        let challenge = h.send(c.request(.binding, sign: false), from: c)
        #expect(challenge.errorCode == 401 && challenge.nonce != nil && challenge.mapped == nil)
        c.nonce = challenge.nonce ?? []
        let r = h.send(c.request(.binding), from: c)
        #expect(r.isSuccess && r.mapped == c.fiveTuple.client && r.verifies(c.key))
        c.password = "wrong"
        #expect(h.send(c.request(.binding), from: c).errorCode == 401)
    }

    @Test("--no-udp-relay: UDP allocations get 442; TCP allocations still follow --no-tcp-relay")
    func noUDPRelay() {
        var h = Harness {
            $0.udpRelay = false
            $0.tcpRelay = true
        }
        var c = TestClient()
        #expect(h.allocate(&c).errorCode == 442)
        #expect(h.allocationCount == 0)
        var t = TestClient()
        t.fiveTuple.transport = .tcp
        h.learnNonce(&t)
        let r = h.send(t.request(.allocate) { (e) throws(STUNError) in try e.appendRequestedTransport(6) }, from: t)
        #expect(r.isSuccess)
    }

    @Test("--no-software-attribute: no SOFTWARE in answers, errors included")
    func noSoftware() {
        var h = Harness { $0.software = nil }
        var c = TestClient()
        #expect(!h.send(c.request(.binding, sign: false), from: c).has(.software))
        let challenge = h.send(c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }, from: c)
        #expect(challenge.errorCode == 401 && !challenge.has(.software))
        c.nonce = challenge.nonce ?? []
        #expect(!h.allocate(&c).has(.software))
    }

    @Test("--permission-lifetime and --channel-lifetime shorten the tables' lifetimes")
    func shortLifetimes() {
        var limits = TableLimits(maxAllocations: 16)
        limits.permissionLifetime = 30
        limits.channelLifetime = 60
        var h = Harness(limits: limits)
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.createPermission(c, ["8.8.8.8:1"]).isSuccess)
        let id = h.server.allocation(for: c.fiveTuple)!
        h.advance(29)
        #expect(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:1")!, now: h.now) != .drop)
        h.advance(2)
        #expect(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:1")!, now: h.now) == .drop)
        h.learnNonce(&c)
        #expect(h.channelBind(c, 0x4000, "8.8.4.4:1").isSuccess)
        h.advance(59)
        check(h.server.routeChannelData(channel: 0x4000, from: c.fiveTuple, now: h.now) == nil, "permission expired at 30 s")
        h.learnNonce(&c)
        #expect(h.createPermission(c, ["8.8.4.4:1"]).isSuccess)
        check(h.server.routeChannelData(channel: 0x4000, from: c.fiveTuple, now: h.now) != nil)
        h.advance(2)
        check(h.server.routeChannelData(channel: 0x4000, from: c.fiveTuple, now: h.now) == nil, "channel expired at 60 s")
    }

    @Test("--check-origin-consistency: later requests must carry the Allocate's ORIGIN")
    func originConsistency() {
        var h = Harness { $0.checkOriginConsistency = true }
        var c = TestClient()
        #expect(h.allocate(&c) { (e) throws(STUNError) in try appendOrigin(&e, "HTTPS://Example.org/app") }.isSuccess)
        // The same origin in canonical form (case, default port, path) is accepted.
        let same = h.send(
            c.request(.refresh) { (e) throws(STUNError) in try appendOrigin(&e, "https://example.org:443") }, from: c)
        #expect(same.isSuccess)
        let other = h.send(
            c.request(.createPermission) { (e) throws(STUNError) in
                try e.append(.xorPeerAddress, xorAddress: TransportAddress("8.8.8.8:1")!)
                try appendOrigin(&e, "https://evil.example")
            }, from: c)
        #expect(other.errorCode == 441)
        #expect(h.createPermission(c, ["8.8.8.8:1"]).errorCode == 441)  // none at all
        // One of several ORIGINs matching is enough.
        let several = h.send(
            c.request(.createPermission) { (e) throws(STUNError) in
                try e.append(.xorPeerAddress, xorAddress: TransportAddress("8.8.8.8:1")!)
                try appendOrigin(&e, "https://evil.example")
                try appendOrigin(&e, "https://example.org")
            }, from: c)
        #expect(several.isSuccess)

        // An allocation made without ORIGIN refuses requests that carry one.
        var d = TestClient("198.51.100.8:40000")
        #expect(h.allocate(&d).isSuccess)
        #expect(h.createPermission(d, ["8.8.8.8:1"]).isSuccess)
        let late = h.send(
            d.request(.refresh) { (e) throws(STUNError) in try appendOrigin(&e, "https://example.org") }, from: d)
        #expect(late.errorCode == 441)
    }

    @Test func originChecksAreOffByDefault() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c) { (e) throws(STUNError) in try appendOrigin(&e, "https://example.org") }.isSuccess)
        #expect(h.createPermission(c, ["8.8.8.8:1"]).isSuccess)
    }

    @Test(arguments: [
        ("https://Example.ORG", "https://example.org:443"),
        ("http://example.org:8080/path?q", "http://example.org:8080"),
        ("https://user@[2001:DB8::1]/x", "https://[2001:db8::1]:443"),
        ("turn://example.org", "turn://example.org:3478"),
        ("wss://example.org", "wss://example.org"),
        ("example.org", ""),
        ("https://", ""),
        ("https://example.org:99999", ""),
    ])
    func canonicalOrigins(input: String, expected: String) {
        var bytes = Array(input.utf8)
        #expect(bytes.withUnsafeMutableBytes { OriginCheck.canonical(UnsafeRawBufferPointer($0)) } == expected)
    }
}
