import Glibc
import Relay
import STUN
import TURN
import Testing
import URing

/// The kernel fast path on loopback: a real engine with `--offload tc` (or
/// xdp) on lo, real sockets. Needs root (CAP_BPF, CAP_NET_ADMIN); skipped without.
/// The program is attached as a tcx or XDP link owned by the engine, so it
/// is gone when the engine stops, even if a test fails.
@Suite("Kernel fast path on loopback", .serialized, .enabled(if: getuid() == 0, "needs root for BPF and tc"))
struct FastPathTests {
    static func harness(mode: OffloadMode = .tc) throws -> EngineHarness {
        try EngineHarness { c in
            c.offload = mode
            c.offloadInterfaces = ["lo"]
        }
    }

    /// Counters are published once a second: waits until `done` says yes (at most 4 s).
    static func waitForCounters(_ h: EngineHarness, _ done: (EngineHarness) -> Bool) {
        for _ in 0..<40 where !done(h) { usleep(100_000) }
    }

    static func sendIndication(to peer: TransportAddress, _ payload: [UInt8]) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = try buf.withUnsafeMutableBytes { raw throws(STUNError) in
            var e = try STUNEncoder(into: raw, method: .send, class: .indication, transactionID: .random())
            try e.append(.xorPeerAddress, xorAddress: peer)
            var failure: STUNError?
            payload.withUnsafeBytes { b in
                do throws(STUNError) { try e.append(.data, bytes: b) } catch { failure = error }
            }
            if let failure { throw failure }
            return e.count
        }
        return Array(buf[0..<n])
    }

    static func counter(_ h: EngineHarness, _ name: String) -> UInt64 { h.engine.counter(name) ?? 0 }

    /// Datagrams relayed by user space (all relayed minus the kernel's).
    static func userSpaceToPeers(_ h: EngineHarness) -> UInt64 {
        counter(h, "packetsToPeers") - counter(h, "offloadPacketsToPeers")
    }

    /// `rounds` round trips on `channel`: round i's payload from the client
    /// must reach the peer exactly, from the relayed address; the peer's
    /// answer (the payload reversed, then i) must come back to the client as
    /// ChannelData from the server.
    static func roundTrips(
        _ rounds: Int, _ h: EngineHarness, client: TestSocket, peer: TestSocket, relayed: TransportAddress,
        channel: UInt16, payload: (Int) -> [UInt8]
    ) throws {
        for i in 0..<rounds {
            let out = payload(i)
            try client.send(EngineRelayTests.channelData(channel, out), to: h.server)
            let atPeer = try #require(try peer.receive(), "round \(i): nothing at the peer")
            #expect(atPeer.bytes == out)
            #expect(atPeer.from == relayed)
            let answer = Array(out.reversed()) + [UInt8(truncatingIfNeeded: i)]
            try peer.send(answer, to: relayed)
            let back = try #require(try client.receive(), "round \(i): nothing back at the client")
            #expect(back.bytes == EngineRelayTests.channelData(channel, answer))
            #expect(back.from == h.server)
        }
    }

    @Test("ChannelData both ways relayed in the kernel, byte for byte; user space relays none of it", arguments: [OffloadMode.tc, .xdp])
    func relayedInKernel(hook: OffloadMode) throws {
        let h = try Self.harness(mode: hook)
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4001)
        let rounds = 50
        try Self.roundTrips(rounds, h, client: client, peer: peer, relayed: relayed, channel: 0x4001) { i in
            (0..<(40 + i)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
        }
        Self.waitForCounters(h) { Self.counter($0, "offloadPacketsToClients") >= UInt64(rounds) }
        #expect(Self.counter(h, "offloadPacketsToPeers") == UInt64(rounds))
        #expect(Self.counter(h, "offloadPacketsToClients") == UInt64(rounds))
        #expect(Self.userSpaceToPeers(h) == 0)
        #expect(Self.counter(h, "packetsToClients") == Self.counter(h, "offloadPacketsToClients"))
        #expect(Self.counter(h, "offloadEntriesWritten") == 1)
        let attached = hook == .tc ? "offload: kernel fast path on lo (tcx)" : "offload: kernel fast path on lo (xdp generic)"
        #expect(h.logs.all.contains { $0.contains(attached) })
    }

    /// The client's and the peer's families, each way round (RFC 6156:
    /// an IPv6 client may ask for an IPv4 relay and the other way round).
    /// On loopback every datagram is sent by a socket on this host, with a
    /// partial checksum: one that would leave as IPv6 after shrinking (TC)
    /// or at all (XDP) is left to user space, counted as local_origin; and
    /// one that would change IP version on its way to a loopback address
    /// too, counted as unfit. The namespace e2e test, with full checksums
    /// and private addresses, sees every direction in the kernel. Every
    /// message arrives intact either way.
    @Test(
        "IPv6 and mixed families: relayed intact, in the kernel where loopback's checksums allow",
        arguments: [OffloadMode.tc, .xdp], [("v6", "v6"), ("v6", "v4"), ("v4", "v6")])
    func families(hook: OffloadMode, families: (client: String, peer: String)) throws {
        let clientV6 = families.client == "v6", peerV6 = families.peer == "v6"
        let h = try EngineHarness(ipv6: clientV6) { c in
            c.offload = hook
            c.offloadInterfaces = ["lo"]
            if peerV6 { c.relayIPv6 = IPAddress(v6High: 0, v6Low: 1) } else { c.relayIPv4 = IPAddress(v4: 0x7F00_0001) }
        }
        let client = try TestSocket(ipv6: clientV6)
        let peer = try TestSocket(ipv6: peerV6)
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(
            h, client: client, tc: &tc, peer: peer.address, channel: 0x4011, family: peerV6 ? .v6 : .v4)
        #expect(relayed.ip.family == (peerV6 ? .v6 : .v4))
        let rounds = 20
        try Self.roundTrips(rounds, h, client: client, peer: peer, relayed: relayed, channel: 0x4011) { i in
            (0..<(30 + i)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ i) }
        }
        // Which directions loopback lets the kernel carry (see the BPF
        // program's is_partial, is_loopback and the hooks), and why not.
        var inKernel = (toPeer: UInt64(0), toClient: UInt64(0)), localOrigin: UInt64 = 0, unfit: UInt64 = 0
        for toPeer in [true, false] {
            let outV6 = toPeer ? peerV6 : clientV6
            let partialAllowed = hook == .tc ? !(outV6 && toPeer) : !outV6
            if !partialAllowed {
                localOrigin += UInt64(rounds)
            } else if clientV6 != peerV6 {
                unfit += UInt64(rounds)
            } else if toPeer {
                inKernel.toPeer = UInt64(rounds)
            } else {
                inKernel.toClient = UInt64(rounds)
            }
        }
        Self.waitForCounters(h) {
            Self.counter($0, "offloadPacketsToPeers") >= inKernel.toPeer
                && Self.counter($0, "offloadPacketsToClients") >= inKernel.toClient
                && Self.counter($0, "packetsToClients") >= UInt64(rounds)
        }
        #expect(Self.counter(h, "offloadPacketsToPeers") == inKernel.toPeer)
        #expect(Self.counter(h, "offloadPacketsToClients") == inKernel.toClient)
        #expect(Self.counter(h, "packetsToPeers") == UInt64(rounds))
        #expect(Self.counter(h, "packetsToClients") == UInt64(rounds))
        #expect(h.engine.offloadPassed?.localOrigin == localOrigin)
        #expect(h.engine.offloadPassed?.unfit == unfit)
    }

    @Test("what the program must not take reaches user space unchanged: STUN, Send indications, bad lengths, padding")
    func nonMatchingPassesThrough() throws {
        let h = try Self.harness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4002)
        // A STUN Binding request from the client: answered by user space.
        try client.send(TURNClient().request(.binding, sign: false), to: h.server)
        let binding = try #require(try client.receive())
        #expect(TURNClient.parse(binding.bytes) { $0.xorMappedAddress } == client.address)
        // A Send indication: relayed by user space.
        try client.send(Self.sendIndication(to: peer.address, Array("indication".utf8)), to: h.server)
        #expect(try peer.receive()?.bytes == Array("indication".utf8))
        // ChannelData padded to 4 bytes (allowed over UDP): the kernel passes
        // it up, user space relays the payload.
        try client.send(EngineRelayTests.channelData(0x4002, [1, 2, 3]) + [0], to: h.server)
        #expect(try peer.receive()?.bytes == [1, 2, 3])
        // A length field longer than the datagram: user space drops it.
        var bad = EngineRelayTests.channelData(0x4002, [9, 9, 9, 9])
        bad[3] = 40
        try client.send(bad, to: h.server)
        // A channel never bound: user space drops it.
        try client.send(EngineRelayTests.channelData(0x4777, [5, 5]), to: h.server)
        // Then a good one goes through the kernel and is the next thing the peer sees.
        try client.send(EngineRelayTests.channelData(0x4002, [7, 7]), to: h.server)
        #expect(try peer.receive()?.bytes == [7, 7])
        Self.waitForCounters(h) { Self.counter($0, "offloadPacketsToPeers") >= 1 }
        #expect(Self.counter(h, "offloadPacketsToPeers") == 1)
        #expect(Self.userSpaceToPeers(h) == 2)  // the indication and the padded frame
        #expect(Self.counter(h, "dropsMalformed") + Self.counter(h, "dropsNoRoute") >= 2)
        #expect((h.engine.offloadPassed?.length ?? 0) >= 2)
        _ = relayed
    }

    @Test("a deleted allocation stops kernel forwarding at once")
    func deletedAllocationStops() throws {
        let h = try Self.harness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4003)
        try client.send(EngineRelayTests.channelData(0x4003, [1]), to: h.server)
        #expect(try peer.receive()?.bytes == [1])
        try client.send(tc.request(.refresh) { e throws(STUNError) in try e.appendLifetime(0) }, to: h.server)
        let answer = try #require(try client.receive())
        #expect(TURNClient.parse(answer.bytes) { $0.messageClass } == .successResponse)
        try peer.send([2], to: relayed)
        try client.send(EngineRelayTests.channelData(0x4003, [3]), to: h.server)
        try peer.socket.setReceiveTimeout(.milliseconds(500))
        try client.socket.setReceiveTimeout(.milliseconds(500))
        #expect(try peer.receive() == nil)
        #expect(try client.receive() == nil)
        Self.waitForCounters(h) { Self.counter($0, "offloadEntriesDeleted") >= 1 }
        #expect(Self.counter(h, "offloadEntriesDeleted") == 1)
        #expect(Self.counter(h, "offloadPacketsToPeers") == 1)
        #expect(h.logs.all.contains { $0.contains("allocation deleted") && $0.contains("to-peer 1 pkts") })
    }

    /// A permission (or a channel) of 2 s: the entry carries that expiry, so
    /// the kernel stops forwarding on its own, and the tick then deletes it.
    @Test("a permission or channel not refreshed stops kernel forwarding", arguments: ["permission", "channel"])
    func expiryStops(what: String) throws {
        let h = try EngineHarness(
            configure: { c in
                c.offload = .tc
                c.offloadInterfaces = ["lo"]
            },
            configureLimits: { l in
                if what == "permission" { l.permissionLifetime = 2 } else { l.channelLifetime = 2 }
            })
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4006)
        try client.send(EngineRelayTests.channelData(0x4006, [1]), to: h.server)
        #expect(try peer.receive()?.bytes == [1])
        try peer.send([2], to: relayed)
        #expect(try client.receive()?.bytes == EngineRelayTests.channelData(0x4006, [2]))
        usleep(3_200_000)  // past the 2 s lifetime and one tick
        try client.send(EngineRelayTests.channelData(0x4006, [3]), to: h.server)
        try peer.send([4], to: relayed)
        try peer.socket.setReceiveTimeout(.milliseconds(500))
        try client.socket.setReceiveTimeout(.milliseconds(500))
        // ChannelData on an expired channel, or to a peer without a
        // permission, is dropped; neither reaches the peer.
        #expect(try peer.receive() == nil)
        if what == "permission" {
            // No permission: the peer's datagram is dropped too.
            #expect(try client.receive() == nil)
        } else {
            // The permission still holds but the channel is gone: user space
            // sends the peer's datagram as a Data indication, not ChannelData.
            let back = try #require(try client.receive())
            #expect(TURNClient.parse(back.bytes) { $0.method == .data && $0.messageClass == .indication } == true)
        }
        Self.waitForCounters(h) { Self.counter($0, "offloadEntriesDeleted") >= 1 }
        #expect(Self.counter(h, "offloadEntriesDeleted") == 1)
        #expect(Self.counter(h, "offloadPacketsToPeers") == 1)
        #expect(Self.counter(h, "offloadPacketsToClients") == 1)
    }

    /// A channel number may go to another peer once its binding and the
    /// 5-minute reservation are over (RFC 8656 §12; both 1 s here): the
    /// kernel must then forward it to the new peer only, and the old peer,
    /// still permitted, reaches the client as a Data indication.
    @Test("a channel rebound to another peer is forwarded by the kernel to the new peer only")
    func channelMovedToAnotherPeer() throws {
        let h = try EngineHarness(
            configure: { c in
                c.offload = .tc
                c.offloadInterfaces = ["lo"]
            },
            configureLimits: { l in
                l.channelLifetime = 1
                l.channelReservation = 1
            })
        let client = try TestSocket()
        let first = try TestSocket()
        let second = try TestSocket()
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: first.address, channel: 0x4020)
        try client.send(EngineRelayTests.channelData(0x4020, [1]), to: h.server)
        #expect(try first.receive()?.bytes == [1])
        usleep(2_500_000)  // the binding (1 s) and its reservation (1 s) are over
        try client.send(tc.request(.channelBind) { e throws(STUNError) in
            try e.appendChannelNumber(0x4020)
            try e.append(.xorPeerAddress, xorAddress: second.address)
        }, to: h.server)
        let bound = try #require(try client.receive())
        #expect(TURNClient.parse(bound.bytes) { $0.messageClass } == .successResponse)
        try client.send(EngineRelayTests.channelData(0x4020, [2]), to: h.server)
        #expect(try second.receive()?.bytes == [2])
        try second.send([3], to: relayed)
        #expect(try client.receive()?.bytes == EngineRelayTests.channelData(0x4020, [3]))
        try first.socket.setReceiveTimeout(.milliseconds(300))
        #expect(try first.receive() == nil)
        try first.send([4], to: relayed)
        let fromFirst = try #require(try client.receive())
        #expect(TURNClient.parse(fromFirst.bytes) { $0.method == .data && $0.messageClass == .indication } == true)
        Self.waitForCounters(h) { Self.counter($0, "offloadPacketsToClients") >= 1 }
        #expect(Self.counter(h, "offloadPacketsToPeers") == 2)  // [1] to the first peer, [2] to the second
        #expect(Self.counter(h, "offloadPacketsToClients") == 1)
    }

    /// Two clients of this server talking through their relays (as two
    /// browsers with relay-only ICE do): the first hop ends at a relayed
    /// address on this host, which the stack would hand to that relay
    /// socket without another pass through the hook; the program relays the
    /// second hop too, so both clients' channels are carried by the kernel.
    @Test("two clients relaying to each other's relayed address: both hops in the kernel", arguments: [OffloadMode.tc, .xdp])
    func hairpin(hook: OffloadMode) throws {
        let h = try Self.harness(mode: hook)
        let a = try TestSocket()
        let b = try TestSocket()
        var ta = TURNClient()
        var tb = TURNClient()
        let relayA = try EngineRelayTests.allocate(h, client: a, tc: &ta, peer: nil, channel: nil)
        let relayB = try EngineRelayTests.allocate(h, client: b, tc: &tb, peer: relayA, channel: 0x4031)
        try a.send(ta.request(.channelBind) { e throws(STUNError) in
            try e.appendChannelNumber(0x4030)
            try e.append(.xorPeerAddress, xorAddress: relayB)
        }, to: h.server)
        #expect(TURNClient.parse(try #require(try a.receive()).bytes) { $0.messageClass } == .successResponse)
        let rounds = 20
        for i in 0..<rounds {
            let payload = (0..<(20 + i)).map { UInt8(truncatingIfNeeded: $0 &* 5 &+ i) }
            try a.send(EngineRelayTests.channelData(0x4030, payload), to: h.server)
            #expect(try b.receive()?.bytes == EngineRelayTests.channelData(0x4031, payload))
            try b.send(EngineRelayTests.channelData(0x4031, payload + [9]), to: h.server)
            #expect(try a.receive()?.bytes == EngineRelayTests.channelData(0x4030, payload + [9]))
        }
        Self.waitForCounters(h) { Self.counter($0, "offloadPacketsToClients") >= UInt64(2 * rounds) }
        #expect(Self.counter(h, "offloadPacketsToPeers") == UInt64(2 * rounds))
        #expect(Self.counter(h, "offloadPacketsToClients") == UInt64(2 * rounds))
        #expect(Self.userSpaceToPeers(h) == 0)
    }

    @Test("a reload whose peer policy denies the peer takes the channel out of the kernel")
    func reloadDeniesPeer() throws {
        let h = try Self.harness()
        let client = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        _ = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4004)
        try client.send(EngineRelayTests.channelData(0x4004, [1]), to: h.server)
        #expect(try peer.receive()?.bytes == [1])
        var denying = h.turn
        denying.peerPolicy = PeerPolicy(allowLoopbackPeers: false, serverAddresses: [h.server.ip])
        h.engine.reload(turn: denying)
        Self.waitForCounters(h) { Self.counter($0, "offloadEntriesDeleted") >= 1 }
        #expect(Self.counter(h, "offloadEntriesDeleted") == 1)
        #expect(Self.counter(h, "offloadPacketsToPeers") == 1)
    }

    @Test("--offload off loads nothing; auto on a host that can loads the program")
    func modes() throws {
        let off = try Self.harness(mode: .off)
        #expect(off.engine.offloadPassed == nil)
        #expect(!off.logs.all.contains { $0.contains("offload:") })
        let auto = try Self.harness(mode: .auto)
        #expect(auto.engine.offloadPassed != nil)
    }

    @Test("--offload auto picks XDP and says so; with lo's XDP taken it falls back to TC, saying why")
    func autoPicksXDPThenTC() throws {
        do {
            let auto = try Self.harness(mode: .auto)
            #expect(auto.logs.all.contains { $0.contains("offload: kernel fast path on lo (xdp generic) (auto: XDP attached)") })
        }
        // One XDP program per interface: a second uturnd on lo gets TC.
        let xdp = try Self.harness(mode: .xdp)
        let auto = try Self.harness(mode: .auto)
        #expect(auto.logs.all.contains { $0.contains("offload: kernel fast path on lo (tcx) (auto: XDP refused: lo:") })
        #expect(throws: EngineError.self) { _ = try Self.harness(mode: .xdp) }
        _ = xdp
    }
}

/// Two engines with the fast path on lo at once (two tcx programs in a
/// chain): each relays its own channels in the kernel, because a program
/// passes what it does not relay on to the next one.
@Suite("Kernel fast path: two relays on one interface", .serialized, .enabled(if: getuid() == 0, "needs root"))
struct FastPathCoexistenceTests {
    @Test("both relays' channels are relayed in the kernel")
    func twoPrograms() throws {
        let first = try FastPathTests.harness()
        let second = try FastPathTests.harness()
        for h in [first, second] {
            let client = try TestSocket()
            let peer = try TestSocket()
            var tc = TURNClient()
            let relayed = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4010)
            for i in 0..<10 {
                try client.send(EngineRelayTests.channelData(0x4010, [UInt8(i)]), to: h.server)
                #expect(try peer.receive()?.bytes == [UInt8(i)])
                try peer.send([UInt8(i), 1], to: relayed)
                #expect(try client.receive()?.bytes == EngineRelayTests.channelData(0x4010, [UInt8(i), 1]))
            }
        }
        for h in [first, second] {
            FastPathTests.waitForCounters(h) { FastPathTests.counter($0, "offloadPacketsToClients") >= 10 }
            #expect(FastPathTests.counter(h, "offloadPacketsToPeers") == 10)
            #expect(FastPathTests.counter(h, "offloadPacketsToClients") == 10)
        }
    }
}
