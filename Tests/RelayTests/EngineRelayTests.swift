import Glibc
import Relay
import STUN
import TURN
import Testing
import URing

/// The engine end to end on loopback: real sockets, real io_uring workers.
@Suite("Engine relays on loopback", .serialized)
struct EngineRelayTests {
    /// Allocates (401 then success), permits and binds `channel` to `peer`.
    /// Returns the relayed address.
    static func allocate(
        _ h: EngineHarness, client: TestSocket, tc: inout TURNClient, peer: TransportAddress?,
        channel: UInt16?, family: IPAddress.Family = .v4
    ) throws -> TransportAddress {
        try client.send(tc.request(.allocate, sign: false) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
        let challenge = try #require(try client.receive())
        #expect(TURNClient.parse(challenge.bytes) { $0.errorCode?.code } == 401)
        tc.nonce = try #require(TURNClient.parse(challenge.bytes) { $0.nonceBytes.map(Array.init) } ?? nil)
        try client.send(tc.request(.allocate) { e throws(STUNError) in
            try e.appendRequestedTransport(17)
            if family == .v6 { try e.appendAddressFamily(.requestedAddressFamily, family: 0x02) }
        }, to: h.server)
        let ok = try #require(try client.receive())
        let relayed = try #require(TURNClient.parse(ok.bytes) { $0.xorRelayedAddress } ?? nil)
        #expect(TURNClient.parse(ok.bytes) { $0.messageClass } == .successResponse)
        if let peer {
            if let channel {
                try client.send(tc.request(.channelBind) { e throws(STUNError) in
                    try e.appendChannelNumber(channel)
                    try e.append(.xorPeerAddress, xorAddress: peer)
                }, to: h.server)
            } else {
                try client.send(tc.request(.createPermission) { e throws(STUNError) in
                    try e.append(.xorPeerAddress, xorAddress: peer)
                }, to: h.server)
            }
            let bound = try #require(try client.receive())
            #expect(TURNClient.parse(bound.bytes) { $0.messageClass } == .successResponse)
        }
        return relayed
    }

    static func channelData(_ channel: UInt16, _ payload: [UInt8]) -> [UInt8] {
        [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
    }

    /// ChannelData on `channel` from `client` reaches the peer from `relayed`,
    /// and the peer's answer (the payload reversed) comes back on the channel.
    static func roundTrip(
        _ h: EngineHarness, client: TestSocket, peer: TestSocket, relayed: TransportAddress, channel: UInt16,
        _ payload: [UInt8]
    ) throws {
        try client.send(channelData(channel, payload), to: h.server)
        let atPeer = try #require(try peer.receive())
        #expect(atPeer.bytes == payload)
        #expect(atPeer.from == relayed)
        try peer.send(payload.reversed(), to: relayed)
        let back = try #require(try client.receive())
        #expect(back.bytes == channelData(channel, payload.reversed()))
    }

    @Test("Binding request gets XOR-MAPPED-ADDRESS")
    func binding() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        try client.send(TURNClient().request(.binding, sign: false), to: h.server)
        let reply = try #require(try client.receive())
        #expect(TURNClient.parse(reply.bytes) { $0.xorMappedAddress } == client.address)
    }

    @Test("ChannelData both ways, 0x4000 and the RFC 5766 range", arguments: [UInt16(0x4000), 0x4FFF, 0x5000, 0x7FFF])
    func channelRoundTrip(channel: UInt16) throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: channel)
        for i in 0..<20 {
            let payload = (0..<(100 + i)).map { UInt8(truncatingIfNeeded: $0 &+ i) }
            try Self.roundTrip(h, client: client, peer: peer, relayed: relayed, channel: channel, payload)
        }
    }

    @Test("Send indication to the peer, Data indication back")
    func sendAndDataIndications() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: nil)
        var buf = [UInt8](repeating: 0, count: 256)
        let n = try buf.withUnsafeMutableBytes { raw throws(STUNError) in
            var e = try STUNEncoder(into: raw, method: .send, class: .indication, transactionID: .random())
            try e.append(.xorPeerAddress, xorAddress: peer.address)
            let hello: [UInt8] = Array("hello".utf8)
            var failure: STUNError?
            hello.withUnsafeBytes { b in
                do throws(STUNError) { try e.append(.data, bytes: b) } catch { failure = error }
            }
            if let failure { throw failure }
            return e.count
        }
        try client.send(Array(buf[0..<n]), to: h.server)
        let atPeer = try #require(try peer.receive())
        #expect(atPeer.bytes == Array("hello".utf8))
        try peer.send(Array("world!".utf8), to: relayed)
        let back = try #require(try client.receive())
        let data = TURNClient.parse(back.bytes) { m in (m.method, m.messageClass, m.xorPeerAddress, m.data.map(Array.init)) }
        #expect(data?.0 == .data && data?.1 == .indication)
        #expect(data?.2 == peer.address)
        #expect(data?.3 == Array("world!".utf8))
    }

    @Test("a peer without permission gets nothing relayed")
    func noPermissionNoRelay() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        let peer = try TestSocket()
        let stranger = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4001)
        // The stranger is on 127.0.0.1 too, so the IP permission covers it:
        // RFC 8656 permissions are per IP, not per port. It still arrives, as
        // a Data indication (no channel for its port).
        try stranger.send([1, 2, 3], to: relayed)
        let viaIndication = try #require(try client.receive())
        #expect(TURNClient.parse(viaIndication.bytes) { $0.method } == .data)
        // ChannelData on an unbound channel is dropped.
        try client.send(Self.channelData(0x4002, [9, 9]), to: h.server)
        #expect(try peer.receive() == nil)
    }

    @Test("loopback peers are refused by default (403), nothing relayed")
    func loopbackDenied() throws {
        let h = try EngineHarness(allowLoopback: false)
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        _ = try Self.allocate(h, client: client, tc: &tc, peer: nil, channel: nil)
        try client.send(tc.request(.createPermission) { e throws(STUNError) in
            try e.append(.xorPeerAddress, xorAddress: peer.address)
        }, to: h.server)
        let reply = try #require(try client.receive())
        #expect(TURNClient.parse(reply.bytes) { $0.errorCode?.code } == 403)
        try client.send(Self.channelData(0x4000, [1]), to: h.server)
        #expect(try peer.receive() == nil)
    }

    /// The paths flags force on a new kernel must relay the same traffic.
    @Test(
        "forced kernel paths relay the same traffic",
        arguments: ["single-shot receive", "no GSO", "no DEFER_TASKRUN", "no SINGLE_ISSUER", "two workers", "batch wait"])
    func forcedPaths(path: String) throws {
        let h = try EngineHarness(workers: path == "two workers" ? 2 : 1) { c in
            switch path {
            case "single-shot receive": c.singleShotReceive = true
            case "no GSO": c.gso = false
            case "no DEFER_TASKRUN": c.noDeferTaskrun = true
            case "no SINGLE_ISSUER": c.noSingleIssuer = true
            case "batch wait": c.batchWaitMicroseconds = 500
            default: break
            }
        }
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4321)
        // A burst, so several datagrams share a CQE batch (and a GSO send when on).
        let payloads = (0..<32).map { i in [UInt8](repeating: UInt8(i), count: 120) }
        for p in payloads { try client.send(Self.channelData(0x4321, p), to: h.server) }
        var atPeer: [[UInt8]] = []
        while atPeer.count < payloads.count, let got = try peer.receive() { atPeer.append(got.bytes) }
        #expect(atPeer == payloads)
        for p in payloads { try peer.send(p, to: relayed) }
        var back: [[UInt8]] = []
        while back.count < payloads.count, let got = try client.receive() { back.append(got.bytes) }
        #expect(back == payloads.map { Self.channelData(0x4321, $0) })
    }

    @Test("a flood that exhausts the buffer ring degrades to drops, then relays again")
    func bufferExhaustion() throws {
        let h = try EngineHarness { c in
            c.buffers = 4
            c.sendOperations = 16
        }
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000)
        // Flood both directions without reading: far more than 4 buffers.
        for i in 0..<3000 {
            try client.send(Self.channelData(0x4000, [UInt8(truncatingIfNeeded: i)]), to: h.server)
            try peer.send([UInt8(truncatingIfNeeded: i)], to: relayed)
        }
        // Drain whatever made it through.
        while try peer.receive() != nil {}
        while try client.receive() != nil {}
        // Receives were re-armed: the session still relays both ways.
        try client.send(Self.channelData(0x4000, Array("after".utf8)), to: h.server)
        #expect(try peer.receive()?.bytes == Array("after".utf8))
        try peer.send(Array("back".utf8), to: relayed)
        #expect(try client.receive()?.bytes == Self.channelData(0x4000, Array("back".utf8)))
        // The flood really ran the ring dry (counters are published each second).
        #expect((h.engine.counter("enobufs") ?? 0) > 0)
    }

    @Test("IPv6: client, relay and peer on ::1")
    func ipv6() throws {
        let h: EngineHarness
        do { h = try EngineHarness(ipv6: true) } catch {
            print("skipping IPv6 engine test: \(error)")
            return
        }
        let client = try TestSocket(ipv6: true)
        let peer = try TestSocket(ipv6: true)
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4abc, family: .v6)
        #expect(relayed.ip.family == .v6)
        try client.send(Self.channelData(0x4abc, [1, 2, 3]), to: h.server)
        #expect(try peer.receive()?.bytes == [1, 2, 3])
        try peer.send([4, 5], to: relayed)
        #expect(try client.receive()?.bytes == Self.channelData(0x4abc, [4, 5]))
    }

    @Test("graceful stop: new Allocates get 508, current sessions relay, workers exit when the last one is gone")
    func drain() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000)
        h.engine.stop(graceful: true, drainSeconds: 60)
        // A newcomer is refused...
        let newcomer = try TestSocket()
        try newcomer.send(tc.request(.allocate, sign: false) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
        let refused = try #require(try newcomer.receive())
        #expect(TURNClient.parse(refused.bytes) { $0.errorCode?.code } == 508)
        // ...while the existing session still relays both ways.
        try client.send(Self.channelData(0x4000, [7]), to: h.server)
        #expect(try peer.receive()?.bytes == [7])
        try peer.send([8], to: relayed)
        #expect(try client.receive()?.bytes == Self.channelData(0x4000, [8]))
        // Deleting the last allocation lets the worker finish (next tick).
        try client.send(tc.request(.refresh) { e throws(STUNError) in try e.appendLifetime(0) }, to: h.server)
        let deleted = try #require(try client.receive())
        #expect(TURNClient.parse(deleted.bytes) { $0.messageClass } == .successResponse)
        h.engine.wait()
        try client.send(tc.request(.binding, sign: false), to: h.server)
        #expect(try client.receive() == nil)
    }

    /// Receive-side GRO on both sides: a client's GSO train of ChannelData
    /// frames and a peer's GSO train of raw datagrams each arrive at the relay
    /// as one coalesced receive; every datagram must come out intact, in order,
    /// with its header stripped (to the peer) or inserted (to the client).
    @Test("GRO trains from client and peer are walked datagram by datagram", arguments: [true, false])
    func groTrains(channel: Bool) throws {
        let h = try EngineHarness { c in
            c.groClient = true
            c.groPeer = true
            c.groBuffers = 16
        }
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: channel ? 0x4444 : nil)
        let payloads = (0..<24).map { i in [UInt8](repeating: UInt8(i), count: i == 23 ? 57 : 120) }
        if channel {
            try client.sendTrain(payloads.map { Self.channelData(0x4444, $0) }, to: h.server)
            var atPeer: [[UInt8]] = []
            while atPeer.count < payloads.count, let got = try peer.receive() { atPeer.append(got.bytes) }
            #expect(atPeer == payloads)
        }
        try peer.sendTrain(payloads, to: relayed)
        var back: [[UInt8]] = []
        while back.count < payloads.count, let got = try client.receive() { back.append(got.bytes) }
        if channel {
            #expect(back == payloads.map { Self.channelData(0x4444, $0) })
        } else {
            let data = back.map { b in TURNClient.parse(b) { m in m.data.map(Array.init) } ?? nil }
            #expect(data == payloads.map { Optional($0) })
            let peers = back.map { b in TURNClient.parse(b) { $0.xorPeerAddress } ?? nil }
            #expect(peers.allSatisfy { $0 == peer.address })
        }
        // The trains really arrived coalesced (counters are published each second).
        var trains: UInt64 = 0
        for _ in 0..<30 where trains == 0 {
            usleep(100_000)
            trains = h.engine.counter("groTrains") ?? 0
        }
        #expect(trains > 0)
    }

    @Test("a listening port held by another server (even with SO_REUSEPORT) is refused at start")
    func portInUse() throws {
        let squatter = try UDPSocket.bound(to: .loopbackV4(port: 0), reusePort: true)
        defer { squatter.close() }
        let port = try squatter.localAddress().port
        var config = EngineConfig()
        config.listen = [TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: port)]
        config.relayIPv4 = IPAddress(v4: 0x7F00_0001)
        config.minPort = 30000
        config.maxPort = 30099
        let engine = try Engine(
            config: config,
            turn: TURNConfiguration(credentials: CredentialStore(realm: "r", users: ["a": "b"])),
            log: { _, _ in })
        #expect(throws: EngineError.self) { try engine.start() }
    }

    @Test("--backend auto with io_uring refused: epoll, one line saying why, and it relays")
    func ringRefusedAuto() throws {
        let h = try EngineHarness { c in
            c.backend = .auto
            c.simulateRingFailure = true
        }
        #expect(h.engine.backend == "epoll")
        #expect(h.logs.all.contains { $0.contains("io_uring unavailable") && $0.contains("EPERM") && $0.contains("using epoll") })
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000)
        try client.send(Self.channelData(0x4000, [1, 2, 3]), to: h.server)
        let got = try #require(try peer.receive())
        #expect(got.bytes == [1, 2, 3] && got.from == relayed)
    }

    @Test("--backend io_uring refused at start: the error names the cause and the fix")
    func ringRefused() throws {
        var config = EngineConfig()
        config.listen = [TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: try EngineHarness.freePort())]
        config.relayIPv4 = IPAddress(v4: 0x7F00_0001)
        config.backend = .ioUring
        config.simulateRingFailure = true
        let engine = try Engine(
            config: config, turn: TURNConfiguration(credentials: CredentialStore(realm: "r", users: ["a": "b"])),
            log: { _, _ in })
        do {
            try engine.start()
            Issue.record("start succeeded with a refused ring")
        } catch {
            #expect(error.description.contains("io_uring_disabled"))
            #expect(error.description.contains("seccomp"))
        }
    }

    @Test("reload: a removed user can no longer allocate; existing sessions keep relaying")
    func reload() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000)
        var next = h.turn
        next.credentials = CredentialStore(realm: EngineHarness.realm, users: ["bob": "other"])
        h.engine.reload(turn: next)
        usleep(200_000)  // the workers take it at their next wake-up
        // alice's session survives the reload...
        try client.send(Self.channelData(0x4000, [1]), to: h.server)
        #expect(try peer.receive()?.bytes == [1])
        try peer.send([2], to: relayed)
        #expect(try client.receive()?.bytes == Self.channelData(0x4000, [2]))
        // ...but a new client signing as alice is refused.
        let newcomer = try TestSocket()
        var other = TURNClient()
        try newcomer.send(other.request(.allocate, sign: false) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
        let challenge = try #require(try newcomer.receive())
        other.nonce = try #require(TURNClient.parse(challenge.bytes) { $0.nonceBytes.map(Array.init) } ?? nil)
        try newcomer.send(other.request(.allocate) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
        let reply = try #require(try newcomer.receive())
        #expect(TURNClient.parse(reply.bytes) { $0.errorCode?.code } == 401)
    }

    @Test("refused requests are counted by code and logged at most once a second; challenges are not logged")
    func refusalsCountedAndRateLimited() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        var tc = TURNClient()
        tc.password = "wrong"
        try client.send(tc.request(.allocate, sign: false) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
        let challenge = try #require(try client.receive())
        tc.nonce = try #require(TURNClient.parse(challenge.bytes) { $0.nonceBytes.map(Array.init) } ?? nil)
        for _ in 0..<5 {
            try client.send(tc.request(.allocate) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
            let reply = try #require(try client.receive())
            #expect(TURNClient.parse(reply.bytes) { $0.errorCode?.code } == 401)
        }
        var refused: UInt64 = 0
        for _ in 0..<30 where refused < 5 {
            usleep(100_000)
            refused = h.engine.counter("refused401") ?? 0
        }
        #expect(refused == 5)
        #expect(h.engine.counter("challenges") == 1)
        let lines = h.logs.all.filter { $0.contains("refused: 401") }
        #expect(lines.count == 1)
    }

    @Test("one log line per allocation created and deleted, with user, relay address and traffic both ways")
    func allocationLogLines() throws {
        let h = try EngineHarness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000)
        try client.send(Self.channelData(0x4000, [1, 2, 3]), to: h.server)
        _ = try peer.receive()
        try peer.send([4, 5], to: relayed)
        _ = try client.receive()
        try client.send(tc.request(.refresh) { e throws(STUNError) in try e.appendLifetime(0) }, to: h.server)
        _ = try client.receive()
        let lines = h.logs.all
        let created = lines.filter { $0.contains("allocation created") }
        let deleted = lines.filter { $0.contains("allocation deleted") }
        #expect(created.count == 1 && deleted.count == 1)
        #expect(created.first?.contains("client \(client.address)") == true)
        #expect(created.first?.contains("user alice relay \(relayed)") == true)
        #expect(deleted.first?.contains("user alice relay \(relayed)") == true)
        #expect(deleted.first?.contains("to-peer 1 pkts/3 B, to-client 1 pkts/2 B") == true)
    }
}
