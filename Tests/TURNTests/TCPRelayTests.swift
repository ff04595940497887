import STUN
import Testing

@testable import TURN

/// A client on a TCP control connection.
func tcpClient(_ address: String = "198.51.100.7:40000", transport: ClientTransport = .tcp) -> TestClient {
    var c = TestClient(address)
    c.fiveTuple.transport = transport
    return c
}

/// A relay provider from before RFC 6062: it keeps the default `openTCPRelay`.
struct UDPOnlyRelays: RelayPortProvider {
    mutating func openRelay(for id: AllocationID, family: IPAddress.Family, evenPort: Bool, reserveNext: Bool)
        -> RelayEndpoint?
    {
        RelayEndpoint(address: TransportAddress(ip: IPAddress("203.0.113.1")!, port: 50000), handle: 1)
    }
    mutating func openReservedRelay(for id: AllocationID, token: UInt64) -> RelayEndpoint? { nil }
    mutating func closeRelay(_ endpoint: RelayEndpoint) {}
}

extension Harness {
    /// A harness with RFC 6062 on.
    static func tcp(limits: TableLimits = TableLimits(maxAllocations: 16)) -> Harness {
        Harness(limits: limits) { $0.tcpRelay = true }
    }

    /// Authenticated Allocate with REQUESTED-TRANSPORT TCP.
    mutating func allocateTCP(
        _ client: inout TestClient, _ extra: (inout STUNEncoder) throws(STUNError) -> Void = { _ in }
    ) -> Reply {
        if client.nonce.isEmpty { learnNonce(&client) }
        return send(
            client.request(.allocate) { (e) throws(STUNError) in
                try e.appendRequestedTransport(6)
                try extra(&e)
            }, from: client)
    }

    mutating func connect(_ client: TestClient, _ peer: String?, transactionID: TransactionID = .random()) -> Reply {
        send(
            client.request(.connect, transactionID: transactionID) { (e) throws(STUNError) in
                if let peer { try e.append(.xorPeerAddress, xorAddress: TransportAddress(peer)!) }
            }, from: client)
    }

    /// ConnectionBind from `client` (a new data connection), learning its nonce first.
    mutating func connectionBind(_ client: inout TestClient, _ connectionID: UInt32?) -> Reply {
        if client.nonce.isEmpty { learnNonce(&client) }
        return send(
            client.request(.connectionBind) { (e) throws(STUNError) in
                if let connectionID { try e.appendConnectionID(connectionID) }
            }, from: client)
    }

    /// The engine reports the outcome of a `.connectToPeer`.
    mutating func connectCompleted(_ connectionID: UInt32, success: Bool) -> (reply: Reply, control: FiveTuple)? {
        var out = [UInt8](repeating: 0, count: 548)
        let r = out.withUnsafeMutableBytes { o in
            server.connectCompleted(connectionID: connectionID, success: success, now: now, into: o)
        }
        guard let r else { return nil }
        return (Reply(bytes: Array(out[0..<r.responseLength]), outcome: STUNOutcome(responseLength: r.responseLength, effect: .none)), r.control)
    }

    /// The engine accepted a peer connection on the relay of `id`.
    mutating func peerArrived(_ id: AllocationID, _ peer: String)
        -> (connectionID: UInt32, indication: [UInt8], control: FiveTuple)?
    {
        var out = [UInt8](repeating: 0, count: 548)
        let r = out.withUnsafeMutableBytes { o in
            server.peerConnectionArrived(allocation: id, peer: TransportAddress(peer)!, now: now, into: o)
        }
        guard let r else { return nil }
        return (r.connectionID, Array(out[0..<r.indicationLength]), r.control)
    }

    /// Every connection ID `nextClosedConnection` has to report now.
    mutating func closedConnections() -> [UInt32] {
        var ids: [UInt32] = []
        while let c = server.nextClosedConnection() { ids.append(c.connectionID) }
        return ids
    }
}

extension Reply {
    var connectionID: UInt32? { with { $0.connectionID } }
    var connectEffect: (AllocationID, TransportAddress, UInt32)? {
        guard case .connectToPeer(let id, let peer, let connectionID)? = outcome.tcpRelay else { return nil }
        return (id, peer, connectionID)
    }
}

@Suite("RFC 6062 TCP allocations")
struct TCPRelayTests {
    /// A TCP allocation for `c` (learning its nonce) and its id.
    func tcpAllocation(_ h: inout Harness, _ c: inout TestClient) -> AllocationID {
        let r = h.allocateTCP(&c)
        #expect(r.isSuccess)
        return h.server.allocation(for: c.fiveTuple)!
    }

    /// Connect to `peer` and complete it: the connection ID, awaiting its bind.
    func connected(_ h: inout Harness, _ c: TestClient, _ peer: String) -> UInt32 {
        let r = h.connect(c, peer)
        #expect(r.isEmpty)
        guard let (_, _, cid) = r.connectEffect else {
            Issue.record("no connectToPeer effect")
            return 0
        }
        #expect(h.connectCompleted(cid, success: true)?.reply.isSuccess == true)
        return cid
    }

    // MARK: §5.1 Allocate

    @Test("§5.1 off by default: REQUESTED-TRANSPORT TCP is 442 and Connect / ConnectionBind are 400, as before")
    func offByDefault() {
        var h = Harness()
        var c = tcpClient()
        h.learnNonce(&c)
        #expect(h.allocateTCP(&c).errorCode == 442)
        #expect(h.allocationCount == 0 && h.relays.opened.isEmpty)
        #expect(h.connect(c, "8.8.8.8:80").errorCode == 400)
        #expect(h.connectionBind(&c, 1).errorCode == 400)
    }

    @Test("§5.1 item 2: TCP allocation from a UDP (or DTLS) 5-tuple is 400")
    func tcpAllocationOverUDPIs400() {
        var h = Harness.tcp()
        var u = TestClient()
        let r = h.allocateTCP(&u)
        #expect(r.errorCode == 400 && r.verifies(u.key))
        var d = tcpClient("198.51.100.8:1", transport: .dtls)
        #expect(h.allocateTCP(&d).errorCode == 400)
        #expect(h.allocationCount == 0 && h.quotas.allocationCount == 0)
        // UDP allocations from UDP are unaffected.
        #expect(h.allocate(&u).isSuccess)
    }

    @Test("§5.1 item 3: DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN with TCP is 400")
    func tcpAllocationRefusesUDPOnlyAttributes() {
        var h = Harness.tcp()
        var c = tcpClient()
        #expect(h.allocateTCP(&c) { (e) throws(STUNError) in try e.appendDontFragment() }.errorCode == 400)
        #expect(h.allocateTCP(&c) { (e) throws(STUNError) in try e.appendEvenPort(reserveNext: false) }.errorCode == 400)
        #expect(h.allocateTCP(&c) { (e) throws(STUNError) in try e.append(.reservationToken, uint64: 7) }.errorCode == 400)
        // Even where DONT-FRAGMENT would otherwise get 420.
        var h2 = Harness(limits: TableLimits(maxAllocations: 4)) {
            $0.tcpRelay = true
            $0.supportsDontFragment = false
        }
        var d = tcpClient()
        #expect(h2.allocateTCP(&d) { (e) throws(STUNError) in try e.appendDontFragment() }.errorCode == 400)
        #expect(h.allocationCount == 0 && h.relays.opened.isEmpty)
    }

    @Test("§5.1 items 4-5: a TCP relay from the provider, recorded as TCP, no RESERVATION-TOKEN; TLS works too")
    func tcpAllocationSucceeds() {
        var h = Harness.tcp()
        var c = tcpClient(transport: .tls)
        let r = h.allocateTCP(&c)
        #expect(r.isSuccess && r.verifies(c.key))
        #expect(r.relayed == [TransportAddress("203.0.113.1:50000")!])
        #expect(r.reservationToken == nil && r.lifetime == 600 && r.mapped == c.fiveTuple.client)
        guard case .allocationCreated(let id, let v4?, nil) = r.outcome.effect else {
            Issue.record("no allocation effect")
            return
        }
        #expect(v4.handle >> 32 == 1)  // FakeRelays.openTCPRelay made it
        #expect(h.server.tables.relayTransport(of: id) == .tcp)
        // Refresh works as for UDP; deleting reports the relay transport.
        #expect(h.refresh(c, lifetime: 1200).lifetime == 1200)
        let del = h.refresh(c, lifetime: 0)
        guard case .allocationDeleted(let removed) = del.outcome.effect else {
            Issue.record("no delete effect")
            return
        }
        #expect(removed.relayTransport == .tcp && h.relays.closed == [v4])
    }

    @Test("§5.1 with RFC 8656 §7.2: IPv6 TCP relays; ADDITIONAL-ADDRESS-FAMILY gets the first family and ADDRESS-ERROR-CODE 440")
    func tcpAllocationFamilies() {
        var h = Harness.tcp()
        var a = tcpClient("198.51.100.1:1")
        let v6 = h.allocateTCP(&a) { (e) throws(STUNError) in try e.appendAddressFamily(.requestedAddressFamily, family: 0x02) }
        #expect(v6.isSuccess && v6.relayed.first?.ip.family == .v6)
        var b = tcpClient("198.51.100.2:1")
        let dual = h.allocateTCP(&b) { (e) throws(STUNError) in try e.appendAddressFamily(.additionalAddressFamily, family: 0x02) }
        #expect(dual.isSuccess && dual.relayed.map(\.ip.family) == [.v4])
        #expect(dual.addressErrorCode == 440)
        #expect(h.relays.opened.count == 2)
    }

    @Test("§5.1: a provider without TCP relays (the protocol's default openTCPRelay) gives 508")
    func providerWithoutTCPRelaysIs508() {
        var h = Harness.tcp()
        var c = tcpClient()
        h.learnNonce(&c)
        var relays = UDPOnlyRelays()
        var out = [UInt8](repeating: 0, count: 548)
        let packet = c.request(.allocate) { (e) throws(STUNError) in try e.appendRequestedTransport(6) }
        let outcome = packet.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { o in
                h.server.handleSTUN(p, from: c.fiveTuple, now: h.now, unixTime: h.unixTime, response: o, relays: &relays)
            }
        }
        let r = Reply(bytes: Array(out[0..<outcome.responseLength]), outcome: outcome)
        #expect(r.errorCode == 508)
        #expect(h.allocationCount == 0 && h.quotas.allocationCount == 0)
    }

    // MARK: §5.2 Connect

    @Test("§5.2 Connect: no answer yet and .connectToPeer; success then carries CONNECTION-ID, signed like the request")
    func connectHappyPath() {
        var h = Harness.tcp()
        var c = tcpClient()
        c.fingerprint = true
        let id = tcpAllocation(&h, &c)
        let t = TransactionID.random()
        let r = h.connect(c, "8.8.8.8:443", transactionID: t)
        // The only effect is the RFC 6062 one (checked below).
        #expect(r.isEmpty && r.outcome.tcpRelay != nil)
        guard let (aid, peer, cid) = r.connectEffect else {
            Issue.record("no connectToPeer effect")
            return
        }
        #expect(aid == id && peer == TransportAddress("8.8.8.8:443") && cid != 0)
        #expect(h.server.connection(cid) == ConnectionInfo(allocation: id, peer: peer, state: .connecting))
        guard let (reply, control) = h.connectCompleted(cid, success: true) else {
            Issue.record("no Connect response")
            return
        }
        #expect(control == c.fiveTuple)
        #expect(reply.isSuccess && reply.with { $0.method } == .connect && reply.transactionID == t)
        #expect(reply.connectionID == cid)
        #expect(reply.verifies(c.key) && reply.has(.fingerprint) && reply.with { $0.verifyFingerprint() })
        #expect(h.server.connection(cid)?.state == .awaitingBind)
        // Answered once only.
        #expect(h.connectCompleted(cid, success: true) == nil)
    }

    @Test("§5.2 Connect answered with MESSAGE-INTEGRITY-SHA256 when the request used it")
    func connectResponseUsesSHA256() {
        var h = Harness.tcp()
        var c = tcpClient()
        c.useSHA256 = true
        _ = tcpAllocation(&h, &c)
        guard let (_, _, cid) = h.connect(c, "8.8.8.8:443").connectEffect,
            let (reply, _) = h.connectCompleted(cid, success: true)
        else {
            Issue.record("Connect failed")
            return
        }
        #expect(reply.has(.messageIntegritySHA256) && !reply.has(.messageIntegrity))
        #expect(reply.verifies(c.key, sha256: true))
    }

    @Test("§5.2 Connect failure or timeout: 447, signed, and the connection is forgotten")
    func connectFailureIs447() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        let t = TransactionID.random()
        guard let (_, _, cid) = h.connect(c, "8.8.8.8:443", transactionID: t).connectEffect,
            let (reply, control) = h.connectCompleted(cid, success: false)
        else {
            Issue.record("Connect failed early")
            return
        }
        #expect(control == c.fiveTuple)
        #expect(reply.errorCode == 447 && reply.transactionID == t && reply.verifies(c.key))
        #expect(reply.with { $0.errorCode?.reason } == "Connection Timeout or Failure")
        #expect(h.server.connection(cid) == nil && h.server.connectionCount == 0)
        #expect(h.connectCompleted(cid, success: true) == nil)
        // The peer may be tried again.
        #expect(h.connect(c, "8.8.8.8:443").connectEffect != nil)
    }

    @Test("§5.2 446 while a Connect to the peer is in progress, pending its bind, or bound; other ports are other peers")
    func duplicateConnectIs446() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        guard let (_, _, cid) = h.connect(c, "8.8.8.8:443").connectEffect else {
            Issue.record("no effect")
            return
        }
        let again = h.connect(c, "8.8.8.8:443")
        #expect(again.errorCode == 446 && again.outcome.tcpRelay == nil && again.verifies(c.key))
        #expect(again.with { $0.errorCode?.reason } == "Connection Already Exists")
        #expect(h.connect(c, "8.8.8.8:444").connectEffect != nil)
        _ = h.connectCompleted(cid, success: true)
        #expect(h.connect(c, "8.8.8.8:443").errorCode == 446)
        var d = tcpClient("198.51.100.7:40001")
        #expect(h.connectionBind(&d, cid).isSuccess)
        #expect(h.connect(c, "8.8.8.8:443").errorCode == 446)
        // Once either side closes, the peer may be connected again.
        h.server.removeConnection(cid)
        #expect(h.connect(c, "8.8.8.8:443").connectEffect != nil)
    }

    @Test("§5.2 not cached: a repeated Connect (same transaction) is processed again, and gets 446")
    func connectIsNotCached() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        let msg = c.request(.connect) { (e) throws(STUNError) in try e.append(.xorPeerAddress, xorAddress: TransportAddress("8.8.8.8:443")!) }
        #expect(h.send(msg, from: c).connectEffect != nil)
        #expect(h.send(msg, from: c).errorCode == 446)
        #expect(h.server.connectionCount == 1)
    }

    @Test("§5.2 400 without (or with an unusable) XOR-PEER-ADDRESS; 403 for a peer the policy denies; 443 across families")
    func connectBadOrDeniedPeer() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        #expect(h.connect(c, nil).errorCode == 400)
        #expect(h.connect(c, "8.8.8.8:0").errorCode == 400)
        for denied in ["127.0.0.1:80", "10.0.0.1:80", "203.0.113.1:3478", "169.254.1.1:80"] {
            let r = h.connect(c, denied)
            #expect(r.errorCode == 403 && r.verifies(c.key), "\(denied)")
        }
        #expect(h.connect(c, "[2001:4860::1]:80").errorCode == 443)
        #expect(h.server.connectionCount == 0)
    }

    @Test("§5.2 437 without an allocation; 400 on a UDP allocation; 441 for another user on the control connection")
    func connectWithoutTCPAllocation() {
        var h = Harness.tcp()
        var c = tcpClient()
        h.learnNonce(&c)
        #expect(h.connect(c, "8.8.8.8:443").errorCode == 437)
        var u = TestClient("198.51.100.9:1")
        #expect(h.allocate(&u).isSuccess)
        #expect(h.connect(u, "8.8.8.8:443").errorCode == 400)
        _ = tcpAllocation(&h, &c)
        var b = c
        b.username = "bob"
        b.password = "hunter2"
        #expect(h.connect(b, "8.8.8.8:443").errorCode == 441)
        #expect(h.server.connectionCount == 0)
    }

    @Test("§5.2 Connect neither needs a permission nor installs one")
    func connectAndPermissions() {
        var h = Harness.tcp()
        var c = tcpClient()
        let id = tcpAllocation(&h, &c)
        _ = connected(&h, c, "8.8.8.8:443")
        #expect(h.server.tables.permissionCount(of: id, now: h.now) == 0)
        // So the same peer connecting in is still refused (§5.3).
        #expect(h.peerArrived(id, "8.8.8.8:5555") == nil)
    }

    @Test("§5.2 no room: Connect past the per-allocation or per-worker share is 508")
    func connectLimitIs508() {
        var h = Harness.tcp(limits: TableLimits(maxAllocations: 4, maxConnectionsPerAllocation: 2, maxConnections: 3))
        var a = tcpClient("198.51.100.1:1")
        var b = tcpClient("198.51.100.2:1")
        _ = tcpAllocation(&h, &a)
        _ = tcpAllocation(&h, &b)
        #expect(h.connect(a, "8.8.8.8:1").connectEffect != nil)
        #expect(h.connect(a, "8.8.8.8:2").connectEffect != nil)
        #expect(h.connect(a, "8.8.8.8:3").errorCode == 508)
        #expect(h.connect(b, "8.8.8.8:1").connectEffect != nil)
        #expect(h.connect(b, "8.8.8.8:2").errorCode == 508)  // the worker's 3 are taken
    }

    // MARK: §5.3 peer connections

    @Test("§5.3 a peer with a permission gets a ConnectionAttempt (XOR-PEER-ADDRESS, CONNECTION-ID) to the control connection")
    func peerConnectionWithPermission() {
        var h = Harness.tcp()
        var c = tcpClient()
        let id = tcpAllocation(&h, &c)
        #expect(h.createPermission(c, ["8.8.8.8:0"]).isSuccess)
        guard let (cid, indication, control) = h.peerArrived(id, "8.8.8.8:5555") else {
            Issue.record("peer connection refused")
            return
        }
        #expect(cid != 0 && control == c.fiveTuple)
        let m = Reply(bytes: indication, outcome: STUNOutcome(responseLength: indication.count, effect: .none))
        #expect(m.with { $0.method } == .connectionAttempt && m.messageClass == .indication)
        #expect(m.connectionID == cid && m.with { $0.xorPeerAddress } == TransportAddress("8.8.8.8:5555"))
        #expect(h.server.connection(cid) == ConnectionInfo(allocation: id, peer: TransportAddress("8.8.8.8:5555")!, state: .awaitingBind))
        // A second connection from another port of the same peer is another connection.
        let second = h.peerArrived(id, "8.8.8.8:5556")
        #expect(second != nil && second?.connectionID != cid)
        // And the client can bind it.
        var d = tcpClient("198.51.100.7:40001")
        let bind = h.connectionBind(&d, cid)
        #expect(bind.isSuccess)
        #expect(bind.outcome.tcpRelay == .bindConnection(connectionID: cid, allocation: id, peer: TransportAddress("8.8.8.8:5555")!))
    }

    @Test("§5.3 without a permission (never made, expired, or another IP) the peer connection is refused")
    func peerConnectionWithoutPermission() {
        var h = Harness.tcp()
        var c = tcpClient()
        let id = tcpAllocation(&h, &c)
        #expect(h.peerArrived(id, "8.8.8.8:5555") == nil)
        #expect(h.createPermission(c, ["8.8.8.8:0"]).isSuccess)
        #expect(h.peerArrived(id, "8.8.4.4:5555") == nil)
        h.advance(300)
        #expect(h.peerArrived(id, "8.8.8.8:5555") == nil)
        #expect(h.server.connectionCount == 0)
        // Nor on a UDP allocation, or a gone one.
        var u = TestClient("198.51.100.9:1")
        #expect(h.allocate(&u).isSuccess)
        let uid = h.server.allocation(for: u.fiveTuple)!
        #expect(h.createPermission(u, ["8.8.8.8:0"]).isSuccess)
        #expect(h.peerArrived(uid, "8.8.8.8:5555") == nil)
        #expect(h.peerArrived(AllocationID(slot: id.slot, generation: id.generation &+ 1), "8.8.8.8:5555") == nil)
    }

    @Test("§5.3 no room: a peer connection past the allocation's share is refused")
    func peerConnectionLimit() {
        var h = Harness.tcp(limits: TableLimits(maxAllocations: 4, maxConnectionsPerAllocation: 1))
        var c = tcpClient()
        let id = tcpAllocation(&h, &c)
        #expect(h.createPermission(c, ["8.8.8.8:0"]).isSuccess)
        #expect(h.peerArrived(id, "8.8.8.8:1") != nil)
        #expect(h.peerArrived(id, "8.8.8.8:2") == nil)
    }

    // MARK: §5.4 ConnectionBind

    @Test("§5.4 ConnectionBind on a new TCP connection: signed success, .bindConnection, the connection is bound")
    func connectionBindHappyPath() {
        var h = Harness.tcp()
        var c = tcpClient()
        let id = tcpAllocation(&h, &c)
        let cid = connected(&h, c, "8.8.8.8:443")
        var d = tcpClient("198.51.100.7:40001")
        d.fingerprint = true
        let r = h.connectionBind(&d, cid)
        #expect(r.isSuccess && r.with { $0.method } == .connectionBind)
        #expect(r.verifies(d.key) && r.has(.fingerprint))
        // The only effect is the RFC 6062 one.
        #expect(r.outcome.tcpRelay == .bindConnection(connectionID: cid, allocation: id, peer: TransportAddress("8.8.8.8:443")!))
        #expect(h.server.connection(cid)?.state == .bound)
        // Bound connections do not expire.
        h.advance(120)
        #expect(h.server.nextExpiredConnection(now: h.now) == nil)
        #expect(h.server.connection(cid)?.state == .bound)
    }

    @Test("§5.4 400 without CONNECTION-ID, for an unknown one, or one still connecting")
    func connectionBindUnknownIs400() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        var d = tcpClient("198.51.100.7:40001")
        #expect(h.connectionBind(&d, nil).errorCode == 400)
        #expect(h.connectionBind(&d, 0x1234_5678).errorCode == 400)
        guard let (_, _, cid) = h.connect(c, "8.8.8.8:443").connectEffect else {
            Issue.record("no effect")
            return
        }
        let r = h.connectionBind(&d, cid)
        #expect(r.errorCode == 400 && r.outcome.tcpRelay == nil && r.verifies(d.key))
        #expect(h.server.connection(cid)?.state == .connecting)
    }

    @Test("§5.2, §5.3 no ConnectionBind within 30 s: the bind gets 400 and nextExpiredConnection reports it once")
    func connectionBindAfter30sIs400() {
        var h = Harness.tcp()
        var c = tcpClient()
        let id = tcpAllocation(&h, &c)
        let early = connected(&h, c, "8.8.8.8:1")
        #expect(h.createPermission(c, ["8.8.4.4:0"]).isSuccess)
        h.advance(10)
        guard let (late, _, _) = h.peerArrived(id, "8.8.4.4:2") else {
            Issue.record("peer refused")
            return
        }
        h.advance(19)
        #expect(h.server.nextExpiredConnection(now: h.now) == nil)
        h.advance(1)  // 30 s after the Connect succeeded
        var d = tcpClient("198.51.100.7:40001")
        #expect(h.connectionBind(&d, early).errorCode == 400)
        let expired = h.server.nextExpiredConnection(now: h.now)
        #expect(expired?.connectionID == early && expired?.allocation == id)
        #expect(h.server.nextExpiredConnection(now: h.now) == nil)
        #expect(h.server.connection(early) == nil)
        // The other is still within its 30 s and binds.
        #expect(h.connectionBind(&d, late).isSuccess)
        h.advance(60)
        #expect(h.server.nextExpiredConnection(now: h.now) == nil)
        #expect(h.server.connectionCount == 1)
    }

    @Test("§5.4 an already bound CONNECTION-ID cannot be bound again (400)")
    func connectionBindReuseIs400() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        let cid = connected(&h, c, "8.8.8.8:443")
        var d = tcpClient("198.51.100.7:40001")
        #expect(h.connectionBind(&d, cid).isSuccess)
        var e = tcpClient("198.51.100.7:40002")
        #expect(h.connectionBind(&e, cid).errorCode == 400)
        #expect(h.connectionBind(&d, cid).errorCode == 400)  // not cached either
    }

    @Test("§5.4 400 over UDP and on the control connection itself")
    func connectionBindWrongConnection() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        let cid = connected(&h, c, "8.8.8.8:443")
        var u = TestClient("198.51.100.7:40001")
        #expect(h.connectionBind(&u, cid).errorCode == 400)
        #expect(h.connectionBind(&c, cid).errorCode == 400)
        #expect(h.server.connection(cid)?.state == .awaitingBind)
    }

    @Test("§5.4 with RFC 8656 §4: only the allocation's user may bind its connections (441)")
    func connectionBindByAnotherUserIs441() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        let cid = connected(&h, c, "8.8.8.8:443")
        var b = tcpClient("198.51.100.7:40001")
        b.username = "bob"
        b.password = "hunter2"
        let r = h.connectionBind(&b, cid)
        #expect(r.errorCode == 441 && r.verifies(b.key))
        #expect(h.server.connection(cid)?.state == .awaitingBind)
        var d = tcpClient("198.51.100.7:40002")
        #expect(h.connectionBind(&d, cid).isSuccess)
    }

    @Test("§5.4 ConnectionBind without credentials is challenged (401) like any request")
    func connectionBindIsAuthenticated() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        let cid = connected(&h, c, "8.8.8.8:443")
        let d = tcpClient("198.51.100.7:40001")
        let r = h.send(d.request(.connectionBind, sign: false) { (e) throws(STUNError) in try e.appendConnectionID(cid) }, from: d)
        #expect(r.errorCode == 401 && r.has(.nonce))
        #expect(h.server.connection(cid)?.state == .awaitingBind)
    }

    // MARK: Allocation removal

    @Test("RFC 6062 §5.1 with RFC 8656 §7: removing the allocation (Refresh 0, expiry, engine) releases its connections")
    func allocationRemovalReleasesConnections() {
        var h = Harness.tcp()
        // Refresh with LIFETIME 0.
        var a = tcpClient("198.51.100.1:1")
        let aid = tcpAllocation(&h, &a)
        #expect(h.createPermission(a, ["8.8.4.4:0"]).isSuccess)
        let bound = connected(&h, a, "8.8.8.8:1")
        var d = tcpClient("198.51.100.1:2")
        #expect(h.connectionBind(&d, bound).isSuccess)
        let waiting = connected(&h, a, "8.8.8.8:2")
        guard let (_, _, connecting) = h.connect(a, "8.8.8.8:3").connectEffect,
            let (incoming, _, _) = h.peerArrived(aid, "8.8.4.4:9")
        else {
            Issue.record("setup failed")
            return
        }
        #expect(h.server.connectionCount == 4)
        #expect(h.refresh(a, lifetime: 0).isSuccess)
        // Gone for every other call at once...
        for cid in [bound, waiting, connecting, incoming] { #expect(h.server.connection(cid) == nil) }
        #expect(h.connectCompleted(connecting, success: true) == nil)
        var e = tcpClient("198.51.100.1:3")
        #expect(h.connectionBind(&e, waiting).errorCode == 400)
        h.advance(31)
        #expect(h.server.nextExpiredConnection(now: h.now) == nil)
        // ...and reported once each for the engine to close.
        #expect(Set(h.closedConnections()) == [bound, waiting, connecting, incoming])
        #expect(h.closedConnections().isEmpty && h.server.connectionCount == 0)

        // Expiry.
        var b = tcpClient("198.51.100.2:1")
        let bid = tcpAllocation(&h, &b)
        let cb = connected(&h, b, "8.8.8.8:1")
        h.advance(600)
        #expect(h.server.nextExpired(now: h.now)?.id == bid)
        #expect(h.closedConnections() == [cb])

        // The engine removes it (control connection closed).
        var c = tcpClient("198.51.100.3:1")
        h.learnNonce(&c)
        let cid = tcpAllocation(&h, &c)
        let cc = connected(&h, c, "8.8.8.8:1")
        #expect(h.server.removeAllocation(cid)?.relayTransport == .tcp)
        // The engine closed the sockets before collecting: removeConnection is harmless.
        h.server.removeConnection(cc)
        #expect(h.closedConnections().isEmpty && h.server.connectionCount == 0)
    }

    @Test("RFC 6062 §5.1: the slot's next allocation starts with no connections and the full share")
    func slotReuseStartsClean() {
        var h = Harness.tcp(limits: TableLimits(maxAllocations: 1, maxConnectionsPerAllocation: 1))
        var a = tcpClient("198.51.100.1:1")
        _ = tcpAllocation(&h, &a)
        _ = connected(&h, a, "8.8.8.8:1")
        #expect(h.refresh(a, lifetime: 0).isSuccess)
        _ = h.closedConnections()
        var b = tcpClient("198.51.100.2:1")
        _ = tcpAllocation(&h, &b)
        #expect(h.connect(b, "8.8.8.8:1").connectEffect != nil)
    }

    // MARK: Other requests on TCP allocations

    @Test("RFC 6062: no channels or Send indications on a TCP allocation (no UDP relay to use)")
    func noDatagramsOnTCPAllocations() {
        var h = Harness.tcp()
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        #expect(h.createPermission(c, ["8.8.8.8:0"]).isSuccess)
        #expect(h.channelBind(c, 0x4000, "8.8.8.8:1").errorCode == 400)
        let send = h.send(
            c.request(.send, sign: false, cls: .indication) { (e) throws(STUNError) in
                try e.append(.xorPeerAddress, xorAddress: TransportAddress("8.8.8.8:1")!)
                try appendData(&e, [1, 2, 3])
            }, from: c)
        #expect(send.isEmpty && send.outcome.effect == .dropped(.notUDPRelay))
    }

    @Test("RFC 6062 §5.2: CONNECTION-IDs are nonzero, unique, and carry the engine's tag")
    func connectionIDs() {
        var h = Harness.tcp(limits: TableLimits(maxAllocations: 4, maxConnectionsPerAllocation: 64, maxConnections: 64))
        h.server.setConnectionIDTag(0x2A, bits: 8)
        var c = tcpClient()
        _ = tcpAllocation(&h, &c)
        var ids: Set<UInt32> = []
        for port in 1...64 {
            guard let (_, _, cid) = h.connect(c, "8.8.8.8:\(port)").connectEffect else {
                Issue.record("Connect \(port) refused")
                return
            }
            #expect(cid != 0 && cid >> 24 == 0x2A)
            ids.insert(cid)
        }
        #expect(ids.count == 64)
    }
}
