import STUN
import Testing

@testable import TURN

@Suite("RFC 8489 §10 Binding and message handling")
struct BindingTests {
    @Test func bindingNeedsNoAuthAndReflectsTheAddress() {
        var h = Harness()
        var c = TestClient()
        c.fingerprint = true
        let r = h.send(c.request(.binding, sign: false), from: c)
        #expect(r.isSuccess)
        #expect(r.mapped == c.fiveTuple.client)
        #expect(r.has(.software) && r.has(.fingerprint) && !r.has(.messageIntegrity))
    }

    @Test("a wrong FINGERPRINT is silently discarded (RFC 8489 §6.3)")
    func wrongFingerprintIsDiscarded() {
        var h = Harness()
        var c = TestClient()
        c.fingerprint = true
        var request = c.request(.binding, sign: false)
        request[request.count - 1] ^= 0xFF
        let r = h.send(request, from: c)
        #expect(r.isEmpty)
        #expect(r.outcome.effect == .dropped(.malformed))
    }

    @Test func responsesAndIndicationsFromClientsAreDroppedAndGarbageToo() {
        var h = Harness()
        let c = TestClient()
        #expect(h.send(c.request(.binding, sign: false, cls: .successResponse), from: c).isEmpty)
        #expect(h.send([1, 2, 3], from: c).isEmpty)
        // A request whose attribute overruns the message gets 400.
        var bad = c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
        bad[22] = 0xFF
        #expect(h.send(bad, from: c).errorCode == 400)
    }

    @Test func unknownMethodIs400() {
        var h = Harness()
        let c = TestClient()
        #expect(h.send(c.request(STUNMethod(rawValue: 0x0FF), sign: false), from: c).errorCode == 400)
    }
}

@Suite("RFC 8489 §9.2 long-term authentication")
struct AuthenticationTests {
    @Test func missingIntegrityGets401WithRealmNonceAndAlgorithms() {
        var h = Harness()
        let c = TestClient()
        let r = h.send(c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }, from: c)
        #expect(r.errorCode == 401)
        #expect(r.has(.realm) && r.has(.nonce) && r.has(.passwordAlgorithms))
        #expect(!r.has(.messageIntegrity))
        #expect(r.nonce.map { String(decoding: $0.prefix(9), as: UTF8.self) } == "obMatJos2")
        #expect(h.allocationCount == 0)
    }

    @Test func withoutSHA256NoCookieNoAlgorithms() {
        var h = Harness { $0.offerSHA256 = false }
        let c = TestClient()
        let r = h.send(c.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }, from: c)
        #expect(r.errorCode == 401 && !r.has(.passwordAlgorithms))
        #expect(r.nonce?.count == 24)
    }

    @Test func md5RequestGetsSignedResponseWithFingerprint() {
        var h = Harness()
        var c = TestClient()
        c.fingerprint = true
        let r = h.allocate(&c)
        #expect(r.isSuccess)
        #expect(r.verifies(c.key))
        #expect(r.has(.fingerprint) && !r.has(.messageIntegritySHA256))
    }

    @Test func sha256Negotiation() {
        var h = Harness()
        var c = TestClient()
        c.useSHA256 = true
        let r = h.allocate(&c)
        #expect(r.isSuccess)
        #expect(r.has(.messageIntegritySHA256) && !r.has(.messageIntegrity))
        #expect(r.verifies(c.key, sha256: true))
    }

    @Test func wrongPasswordAndUnknownUserGet401() {
        var h = Harness()
        var c = TestClient()
        h.learnNonce(&c)
        c.password = "wrong"
        #expect(h.allocate(&c).errorCode == 401)
        c.username = "mallory"
        #expect(h.allocate(&c).errorCode == 401)
        #expect(h.allocationCount == 0)
    }

    @Test func staleNonceGets438WithAFreshNonce() {
        var h = Harness()
        var c = TestClient()
        h.learnNonce(&c)
        h.advance(601)
        let r = h.allocate(&c)
        #expect(r.errorCode == 438)
        #expect(r.has(.realm) && r.has(.nonce))
        c.nonce = r.nonce!
        #expect(h.allocate(&c).isSuccess)
    }

    @Test func nonceFromAnotherClientAddressIsStale() {
        var h = Harness()
        var a = TestClient("198.51.100.7:40000")
        h.learnNonce(&a)
        var b = TestClient("198.51.100.8:40000")
        b.nonce = a.nonce
        #expect(h.allocate(&b).errorCode == 438)
    }

    @Test func integrityWithoutNonceIs400() {
        var h = Harness()
        var c = TestClient()
        c.nonce = []
        var msg = c.request(.allocate) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
        _ = msg
        // Build by hand: USERNAME + MESSAGE-INTEGRITY, no REALM/NONCE.
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { raw -> Int in
            var e = try! STUNEncoder(into: raw, method: .allocate, class: .request, transactionID: .random())
            try! e.appendRequestedTransport(17)
            try! e.append(.username, utf8: "alice")
            try! e.appendMessageIntegrity(key: c.key)
            return e.count
        }
        msg = Array(buf[0..<n])
        #expect(h.send(msg, from: c).errorCode == 400)
    }

    @Test func restAPICredentials() {
        var h = Harness()
        var c = TestClient()
        c.username = "\(h.unixTime + 3600):carol"
        c.password = RESTCredentials.password(secret: "rest-secret", username: c.username)
        #expect(h.allocate(&c).isSuccess)
        // Rotated: the old secret still works.
        var d = TestClient("198.51.100.9:1")
        d.username = "\(h.unixTime + 3600):dave"
        d.password = RESTCredentials.password(secret: "old-secret", username: d.username)
        #expect(h.allocate(&d).isSuccess)
        // Expired.
        var e = TestClient("198.51.100.10:1")
        e.username = "\(h.unixTime - 1):erin"
        e.password = RESTCredentials.password(secret: "rest-secret", username: e.username)
        #expect(h.allocate(&e).errorCode == 401)
        // Unknown secret.
        var f = TestClient("198.51.100.11:1")
        f.username = "\(h.unixTime + 3600):frank"
        f.password = RESTCredentials.password(secret: "guess", username: f.username)
        #expect(h.allocate(&f).errorCode == 401)
    }

    @Test func unknownComprehensionRequiredAttributeIs420() {
        var h = Harness()
        var c = TestClient()
        let r = h.allocate(&c) { (e) throws(STUNError) in
            try e.append(STUNAttributeType(0x7777), uint32: 1)
        }
        #expect(r.errorCode == 420)
        #expect(r.unknownAttributes == [0x7777])
        #expect(r.verifies(c.key))
        #expect(h.allocationCount == 0)
    }
}

@Suite("RFC 8656 §7 Allocate")
struct AllocateTests {
    @Test func successCarriesRelayLifetimeMappedAndState() {
        var h = Harness()
        var c = TestClient()
        let r = h.allocate(&c)
        #expect(r.isSuccess)
        #expect(r.relayed == [TransportAddress("203.0.113.1:50000")!])
        #expect(r.lifetime == 600)
        #expect(r.mapped == c.fiveTuple.client)
        guard case .allocationCreated(let id, let v4, nil) = r.outcome.effect else {
            Issue.record("no allocation effect")
            return
        }
        #expect(v4?.address.port == 50000)
        check(h.server.allocation(for: c.fiveTuple) == id)
        #expect(h.quotas.allocationCount == 1)
    }

    @Test func lifetimeIsClamped() {
        var h = Harness()
        var a = TestClient("198.51.100.1:1")
        #expect(h.allocate(&a) { (e) throws(STUNError) in try e.appendLifetime(99_999) }.lifetime == 3600)
        var b = TestClient("198.51.100.2:1")
        #expect(h.allocate(&b) { (e) throws(STUNError) in try e.appendLifetime(30) }.lifetime == 600)
    }

    @Test func missingTransportIs400AndTCPIs442() {
        var h = Harness()
        var c = TestClient()
        h.learnNonce(&c)
        #expect(h.send(c.request(.allocate), from: c).errorCode == 400)
        let r = h.send(c.request(.allocate) { (e) throws(STUNError) in try e.appendRequestedTransport(6) }, from: c)
        #expect(r.errorCode == 442)
        #expect(h.allocationCount == 0)
    }

    @Test func retransmissionGetsTheSameAnswerWithoutASecondAllocation() {
        var h = Harness()
        var c = TestClient()
        let t = TransactionID.random()
        let first = h.allocate(&c, transactionID: t)
        let again = h.allocate(&c, transactionID: t)
        #expect(first.isSuccess)
        #expect(again.bytes == first.bytes)
        #expect(again.outcome.effect == .none)
        #expect(h.relays.opened.count == 1)
        #expect(h.quotas.allocationCount == 1)
        // A new transaction on the same 5-tuple is a mismatch.
        #expect(h.allocate(&c).errorCode == 437)
    }

    @Test("a retransmitted Allocate is answered from the cache even after many other requests")
    func retransmissionSurvivesOtherTraffic() {
        var h = Harness(limits: TableLimits(maxAllocations: 64))
        var c = TestClient()
        let t = TransactionID.random()
        let first = h.allocate(&c, transactionID: t)
        #expect(first.isSuccess)
        // 500 permission requests from the same client in between: they are
        // not cached, so they cannot push the Allocate's answer out.
        for i in 0..<500 {
            let peer = TransportAddress(ip: IPAddress(v4: 0xC633_6400 | UInt32(i & 0xFF)), port: 9)
            _ = h.send(c.request(.createPermission) { (e) throws(STUNError) in try e.append(.xorPeerAddress, xorAddress: peer) }, from: c)
        }
        let again = h.allocate(&c, transactionID: t)
        #expect(again.bytes == first.bytes)
        #expect(h.relays.opened.count == 1)
    }

    @Test("a reused transaction ID with another method is not answered from the cache")
    func cacheIsKeyedOnTheMethodToo() {
        var h = Harness()
        var c = TestClient()
        let t = TransactionID.random()
        #expect(h.allocate(&c, transactionID: t).isSuccess)
        let refresh = h.send(c.request(.refresh, transactionID: t) { (e) throws(STUNError) in try e.appendLifetime(600) }, from: c)
        #expect(refresh.isSuccess)
        #expect(refresh.with { $0.method } == .refresh)
    }

    @Test func noRelayPortIs508() {
        var h = Harness()
        h.relays.available = 0
        var c = TestClient()
        #expect(h.allocate(&c).errorCode == 508)
        #expect(h.allocationCount == 0 && h.quotas.allocationCount == 0)
    }

    @Test func fullWorkerTableIs508() {
        var h = Harness(limits: TableLimits(maxAllocations: 1))
        var a = TestClient("198.51.100.1:1")
        var b = TestClient("198.51.100.2:1")
        #expect(h.allocate(&a).isSuccess)
        #expect(h.allocate(&b).errorCode == 508)
    }

    @Test func userAndTotalQuotasAre486() {
        var h = Harness(quotas: AllocationQuotas(perUser: 1, total: 2))
        var a = TestClient("198.51.100.1:1")
        var a2 = TestClient("198.51.100.1:2")
        var b = TestClient("198.51.100.2:1")
        b.username = "bob"
        b.password = "hunter2"
        var b2 = TestClient("198.51.100.2:2")
        b2.username = "bob"
        b2.password = "hunter2"
        #expect(h.allocate(&a).isSuccess)
        #expect(h.allocate(&a2).errorCode == 486)
        #expect(h.allocate(&b).isSuccess)
        #expect(h.allocate(&b2).errorCode == 486)
        // Deleting gives the quota back.
        #expect(h.refresh(a, lifetime: 0).isSuccess)
        #expect(h.allocate(&a2).isSuccess)
    }

    @Test func alternateServerRedirectIs300() {
        var h = Harness { $0.alternateServer = TransportAddress("192.0.2.5:3478") }
        var c = TestClient()
        let r = h.allocate(&c)
        #expect(r.errorCode == 300)
        #expect(r.with { $0.alternateServer } == TransportAddress("192.0.2.5:3478"))
        #expect(r.verifies(c.key))
    }

    @Test func dontFragmentAcceptedOrRefused() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c) { (e) throws(STUNError) in try e.appendDontFragment() }.isSuccess)
        var h2 = Harness { $0.supportsDontFragment = false }
        var d = TestClient()
        let r = h2.allocate(&d) { (e) throws(STUNError) in try e.appendDontFragment() }
        #expect(r.errorCode == 420 && r.unknownAttributes == [STUNAttributeType.dontFragment.rawValue])
    }

    @Test func evenPortWithReservationAndToken() {
        var h = Harness()
        h.relays.nextPort = 50001
        var a = TestClient("198.51.100.1:1")
        let r = h.allocate(&a) { (e) throws(STUNError) in try e.appendEvenPort(reserveNext: true) }
        #expect(r.isSuccess)
        #expect(r.relayed.first!.port % 2 == 0)
        let token = r.reservationToken
        #expect(token != nil)
        var b = TestClient("198.51.100.2:1")
        let r2 = h.allocate(&b) { (e) throws(STUNError) in try e.append(.reservationToken, uint64: token!) }
        #expect(r2.isSuccess)
        #expect(r2.relayed.first!.port == r.relayed.first!.port + 1)
        var c = TestClient("198.51.100.3:1")
        #expect(h.allocate(&c) { (e) throws(STUNError) in try e.append(.reservationToken, uint64: 12345) }.errorCode == 508)
        var d = TestClient("198.51.100.4:1")
        let both = h.allocate(&d) { (e) throws(STUNError) in
            try e.append(.reservationToken, uint64: 1)
            try e.appendEvenPort(reserveNext: false)
        }
        #expect(both.errorCode == 400)
    }
}

@Suite("RFC 8656 §7.2 / RFC 6156 address families")
struct AddressFamilyTests {
    @Test func requestedIPv6() {
        var h = Harness()
        var c = TestClient()
        let r = h.allocate(&c) { (e) throws(STUNError) in try e.appendAddressFamily(.requestedAddressFamily, family: 0x02) }
        #expect(r.isSuccess)
        #expect(r.relayed.first?.ip.family == .v6)
    }

    @Test func unsupportedFamilyIs440() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c) { (e) throws(STUNError) in try e.appendAddressFamily(.requestedAddressFamily, family: 0x03) }.errorCode == 440)
        var h4 = Harness { $0.relayFamilies = [.v4] }
        var d = TestClient()
        #expect(h4.allocate(&d) { (e) throws(STUNError) in try e.appendAddressFamily(.requestedAddressFamily, family: 0x02) }.errorCode == 440)
    }

    @Test func dualAllocation() {
        var h = Harness()
        var c = TestClient()
        let r = h.allocate(&c) { (e) throws(STUNError) in try e.appendAddressFamily(.additionalAddressFamily, family: 0x02) }
        #expect(r.isSuccess)
        #expect(r.relayed.map(\.ip.family) == [.v4, .v6])
        // Permissions for both families now work.
        #expect(h.createPermission(c, ["8.8.8.8:1", "[2001:4860::1]:1"]).isSuccess)
    }

    @Test func dualAllocationWithoutIPv6ReportsAddressErrorCode() {
        var h = Harness { $0.relayFamilies = [.v4] }
        var c = TestClient()
        let r = h.allocate(&c) { (e) throws(STUNError) in try e.appendAddressFamily(.additionalAddressFamily, family: 0x02) }
        #expect(r.isSuccess)
        #expect(r.relayed.count == 1)
        #expect(r.addressErrorCode == 440)
    }

    @Test func requestedAndAdditionalTogetherOrAdditionalIPv4Is400() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c) { (e) throws(STUNError) in
            try e.appendAddressFamily(.requestedAddressFamily, family: 0x01)
            try e.appendAddressFamily(.additionalAddressFamily, family: 0x02)
        }.errorCode == 400)
        #expect(h.allocate(&c) { (e) throws(STUNError) in try e.appendAddressFamily(.additionalAddressFamily, family: 0x01) }.errorCode == 400)
    }

    @Test func peerFamilyMismatchIs443() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.createPermission(c, ["[2001:4860::1]:1"]).errorCode == 443)
        #expect(h.channelBind(c, 0x4000, "[2001:4860::1]:1").errorCode == 443)
        let r = h.send(c.request(.refresh) { (e) throws(STUNError) in try e.appendAddressFamily(.requestedAddressFamily, family: 0x02) }, from: c)
        #expect(r.errorCode == 443)
    }
}

@Suite("RFC 8656 §8 Refresh")
struct RefreshTests {
    @Test func refreshExtendsAndZeroDeletes() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        h.advance(500)
        let r = h.refresh(c, lifetime: 1200)
        #expect(r.isSuccess && r.lifetime == 1200)
        h.advance(1000)
        check(h.server.nextExpired(now: h.now) == nil)
        h.learnNonce(&c)  // the old one is stale by now
        let del = h.refresh(c, lifetime: 0)
        #expect(del.isSuccess && del.lifetime == 0)
        guard case .allocationDeleted(let removed) = del.outcome.effect else {
            Issue.record("no delete effect")
            return
        }
        #expect(h.relays.closed == [removed.relayV4!])
        #expect(h.allocationCount == 0 && h.quotas.allocationCount == 0)
        #expect(h.refresh(c, lifetime: 600).errorCode == 437)
    }

    @Test func retransmittedDeleteIsStillSuccess() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        let t = TransactionID.random()
        let msg = c.request(.refresh, transactionID: t) { (e) throws(STUNError) in try e.appendLifetime(0) }
        let first = h.send(msg, from: c)
        let again = h.send(msg, from: c)
        #expect(first.isSuccess && again.bytes == first.bytes)
    }

    @Test func otherUserOnTheSameFiveTupleIs441() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        var b = c
        b.username = "bob"
        b.password = "hunter2"
        #expect(h.refresh(b, lifetime: 600).errorCode == 441)
    }

    @Test func expiryReportsTheAllocationAndFreesQuota() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        h.advance(599)
        check(h.server.nextExpired(now: h.now) == nil)
        h.advance(1)
        let gone = h.server.nextExpired(now: h.now)
        check(gone?.fiveTuple == c.fiveTuple)
        #expect(h.quotas.allocationCount == 0)
        h.learnNonce(&c)
        #expect(h.refresh(c, lifetime: 600).errorCode == 437)
    }
}

@Suite("RFC 8656 §9–10 permissions and CreatePermission")
struct CreatePermissionTests {
    @Test func severalPeersAtOnceAndPortIgnored() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        let r = h.createPermission(c, ["8.8.8.8:1000", "1.1.1.1:53"])
        #expect(r.isSuccess && r.verifies(c.key))
        let id = h.server.allocation(for: c.fiveTuple)!
        check(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:9999")!, now: h.now) == .dataIndication(client: c.fiveTuple))
        check(h.server.routePeerData(to: id, from: TransportAddress("1.1.1.1:1")!, now: h.now) == .dataIndication(client: c.fiveTuple))
        check(h.server.routePeerData(to: id, from: TransportAddress("9.9.9.9:1")!, now: h.now) == .drop)
        h.advance(300)
        check(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:1")!, now: h.now) == .drop)
    }

    @Test func deniedPeerIs403AndNothingInstalled() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        for bad in ["127.0.0.1:1", "[::ffff:127.0.0.1]:1", "10.0.0.1:1", "203.0.113.1:9", "255.255.255.255:1"] {
            #expect(h.createPermission(c, ["8.8.8.8:1", bad]).errorCode == 403 || bad.hasPrefix("[::ffff"), "\(bad)")
        }
        let id = h.server.allocation(for: c.fiveTuple)!
        check(h.server.tables.permissionCount(of: id, now: h.now) == 0)
    }

    @Test func allowListedPrivatePeer() {
        var h = Harness { $0.peerPolicy.allowed = [CIDR("10.0.0.0/8")!] }
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.createPermission(c, ["10.1.2.3:1"]).isSuccess)
    }

    @Test func noPeerIs400AndNoAllocationIs437() {
        var h = Harness()
        var c = TestClient()
        h.learnNonce(&c)
        #expect(h.createPermission(c, ["8.8.8.8:1"]).errorCode == 437)
        #expect(h.allocate(&c).isSuccess)
        #expect(h.createPermission(c, []).errorCode == 400)
    }

    @Test func permissionCapIs508() {
        var h = Harness(limits: TableLimits(maxAllocations: 4, maxPermissionsPerAllocation: 2))
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.createPermission(c, ["8.8.8.8:1", "1.1.1.1:1"]).isSuccess)
        #expect(h.createPermission(c, ["9.9.9.9:1"]).errorCode == 508)
        #expect(h.createPermission(c, ["8.8.8.8:1"]).isSuccess)  // refresh needs no room
    }
}

@Suite("RFC 8656 §11–12 channels and ChannelBind")
struct ChannelBindTests {
    @Test func bindRoutesBothWaysAndInstallsPermission() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        let r = h.channelBind(c, 0x4001, "8.8.8.8:5000")
        #expect(r.isSuccess && r.verifies(c.key))
        let id = h.server.allocation(for: c.fiveTuple)!
        let route = h.server.routeChannelData(channel: 0x4001, from: c.fiveTuple, now: h.now)
        check(route?.0 == id && route?.1 == TransportAddress("8.8.8.8:5000"))
        check(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:5000")!, now: h.now) == .channel(0x4001, client: c.fiveTuple))
        // Another port of the same IP has the permission but no channel.
        check(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:5001")!, now: h.now) == .dataIndication(client: c.fiveTuple))
        check(h.server.routeChannelData(channel: 0x4002, from: c.fiveTuple, now: h.now) == nil)
    }

    @Test func channelRange() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.channelBind(c, 0x3FFF, "8.8.8.8:1").errorCode == 400)
        #expect(h.channelBind(c, 0x8000, "8.8.8.8:2").errorCode == 400)
        #expect(h.channelBind(c, 0x5000, "8.8.8.8:3").isSuccess)  // RFC 5766 range, allowed by default
        #expect(h.channelBind(c, 0x7FFF, "8.8.8.8:4").isSuccess)
        var strict = Harness { $0.strictChannelNumbers = true }
        var d = TestClient()
        #expect(strict.allocate(&d).isSuccess)
        #expect(strict.channelBind(d, 0x5000, "8.8.8.8:1").errorCode == 400)
        #expect(strict.channelBind(d, 0x4FFF, "8.8.8.8:1").isSuccess)
    }

    @Test func rebindingRules() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:1").isSuccess)
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:1").isSuccess)  // refresh
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:2").errorCode == 400)  // number taken
        #expect(h.channelBind(c, 0x4001, "8.8.8.8:1").errorCode == 400)  // peer has a number
        #expect(h.channelBind(c, 0x4000, "127.0.0.1:1").errorCode == 403)
    }

    @Test func channelExpiresAfter600sAndStaysReserved() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c) { (e) throws(STUNError) in try e.appendLifetime(3600) }.isSuccess)
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:1").isSuccess)
        h.advance(300)
        #expect(h.createPermission(c, ["8.8.8.8:1"]).isSuccess)  // keep the permission alive
        h.advance(300)
        check(h.server.routeChannelData(channel: 0x4000, from: c.fiveTuple, now: h.now) == nil)
        h.learnNonce(&c)
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:2").errorCode == 400)  // reserved
        h.advance(300)
        h.learnNonce(&c)
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:2").isSuccess)
    }

    @Test func missingAttributesAre400() {
        var h = Harness()
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.send(c.request(.channelBind) { (e) throws(STUNError) in try e.appendChannelNumber(0x4000) }, from: c).errorCode == 400)
    }
}

func appendData(_ e: inout STUNEncoder, _ payload: [UInt8]) throws(STUNError) {
    var failure: STUNError?
    payload.withUnsafeBytes { p in
        do throws(STUNError) { try e.append(.data, bytes: p) } catch { failure = error }
    }
    if let failure { throw failure }
}

@Suite("RFC 8656 §11.4 Send indication")
struct SendIndicationTests {
    func send(_ h: inout Harness, _ c: TestClient, to peer: String, payload: [UInt8]) -> Reply {
        h.send(
            c.request(.send, sign: false, cls: .indication) { (e) throws(STUNError) in
                try e.append(.xorPeerAddress, xorAddress: TransportAddress(peer)!)
                try appendData(&e, payload)
            }, from: c)
    }

    @Test func relayedOnlyWithPermission() {
        var h = Harness()
        var c = TestClient()
        #expect(send(&h, c, to: "8.8.8.8:1", payload: [1]).outcome.effect == .dropped(.noAllocation))
        #expect(h.allocate(&c).isSuccess)
        let denied = send(&h, c, to: "8.8.8.8:1", payload: [1, 2, 3])
        #expect(denied.isEmpty && denied.outcome.effect == .dropped(.noPermission))
        #expect(h.createPermission(c, ["8.8.8.8:1"]).isSuccess)
        let msg = c.request(.send, sign: false, cls: .indication) { (e) throws(STUNError) in
            try e.append(.xorPeerAddress, xorAddress: TransportAddress("8.8.8.8:7")!)
            try appendData(&e, [9, 8, 7])
        }
        let ok = h.send(msg, from: c)
        #expect(ok.isEmpty)
        guard case .sendToPeer(_, let peer, let range, let df) = ok.outcome.effect else {
            Issue.record("not relayed")
            return
        }
        #expect(peer == TransportAddress("8.8.8.8:7") && !df)
        #expect(Array(msg[range]) == [9, 8, 7])
    }

    /// Two clients of this server talking relay to relay (two relay-only
    /// browsers): the peer is the server's own address, on a relay port. That
    /// is allowed; the server's other ports (its listening port, any service
    /// on the host) are not, by ChannelBind (403) or by Send indication (dropped).
    @Test func ownAddressIsAPeerOnlyOnRelayPorts() {
        var h = Harness {
            $0.peerPolicy = PeerPolicy(serverAddresses: [IPAddress("203.0.113.1")!], relayPorts: 49152...65535)
        }
        var c = TestClient()
        #expect(h.allocate(&c).isSuccess)
        #expect(h.createPermission(c, ["203.0.113.1:1"]).isSuccess)
        #expect(h.channelBind(c, 0x4000, "203.0.113.1:50000").isSuccess)
        #expect(h.channelBind(c, 0x4001, "203.0.113.1:3478").errorCode == 403)
        guard case .sendToPeer = send(&h, c, to: "203.0.113.1:50001", payload: [1]).outcome.effect else {
            Issue.record("relay port not relayed")
            return
        }
        #expect(send(&h, c, to: "203.0.113.1:22", payload: [1]).outcome.effect == .dropped(.noPermission))
        // Without the relay range known, the address is refused whole, as before.
        var strict = Harness()
        var d = TestClient()
        #expect(strict.allocate(&d).isSuccess)
        #expect(strict.createPermission(d, ["203.0.113.1:1"]).errorCode == 403)
    }
}
