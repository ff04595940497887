import Glibc
import Relay
import STUN
import TURN
import Testing
import URing

/// The reactor's one policy for a full submission queue: what the SQ cannot
/// take waits in a backlog and is submitted, in order, at the next flush.
/// These tests give a worker the smallest SQ there is (8 entries) and then
/// ask for far more operations at once (receives on 24 relay sockets, sends
/// to 24 destinations, 24 cancels); every one of them must still happen.
@Suite("A full submission queue loses nothing", .serialized)
struct FullSubmissionQueueTests {
    static let clients = 24
    static let burst = 4

    @Test("an 8-entry SQ: 24 allocations relay bursts both ways and are deleted", arguments: [false, true])
    func tinySubmissionQueue(singleShot: Bool) throws {
        let h = try EngineHarness { c in
            c.sqEntries = 8
            c.singleShotReceive = singleShot
            c.sendOperations = 256
        }
        let peer = try TestSocket()
        var clients: [TestSocket] = []
        var turnClients: [TURNClient] = []
        var relayed: [TransportAddress] = []
        for _ in 0..<Self.clients {
            let client = try TestSocket()
            var tc = TURNClient()
            relayed.append(try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000))
            clients.append(client)
            turnClients.append(tc)
        }

        // Client → peer: every client's burst leaves on its own relay socket,
        // so one flush holds up to 24 sends (and, single-shot, 24 re-arms).
        for (k, client) in clients.enumerated() {
            for i in 0..<Self.burst {
                try client.send(EngineRelayTests.channelData(0x4000, [UInt8(k), UInt8(i)]), to: h.server)
            }
        }
        var atPeer: [TransportAddress: [[UInt8]]] = [:]
        var received = 0
        while received < Self.clients * Self.burst, let got = try peer.receive() {
            atPeer[got.from, default: []].append(got.bytes)
            received += 1
        }
        for (k, address) in relayed.enumerated() {
            #expect(atPeer[address] == (0..<Self.burst).map { [UInt8(k), UInt8($0)] }, "client \(k) to peer")
        }

        // Peer → client: 24 relay sockets receive at once, 24 destinations.
        for (k, address) in relayed.enumerated() {
            for i in 0..<Self.burst { try peer.send([UInt8(k), UInt8(i), 0xEE], to: address) }
        }
        for (k, client) in clients.enumerated() {
            var back: [[UInt8]] = []
            while back.count < Self.burst, let got = try client.receive() { back.append(got.bytes) }
            #expect(
                back == (0..<Self.burst).map { EngineRelayTests.channelData(0x4000, [UInt8(k), UInt8($0), 0xEE]) },
                "peer to client \(k)")
        }

        // Every allocation deleted at once: 24 responses and 24 receive cancels.
        for (k, client) in clients.enumerated() {
            try client.send(
                turnClients[k].request(.refresh) { e throws(STUNError) in try e.appendLifetime(0) }, to: h.server)
        }
        for (k, client) in clients.enumerated() {
            let answer = try #require(try client.receive(), "refresh answer for client \(k)")
            #expect(TURNClient.parse(answer.bytes) { $0.messageClass } == .successResponse)
        }

        // The SQ really was full, and everything was counted (published each
        // second). The epoll backend (UTURN_TEST_BACKEND=epoll) has no SQ.
        let ring = h.engine.backend == "io_uring"
        var sqFull: UInt64 = 0
        var deleted: UInt64 = 0
        for _ in 0..<40 where (ring && sqFull == 0) || deleted < UInt64(Self.clients) {
            usleep(100_000)
            sqFull = h.engine.counter("sqFull") ?? 0
            deleted = h.engine.counter("allocationsDeleted") ?? 0
        }
        #expect(sqFull > 0 || !ring)
        #expect(deleted == UInt64(Self.clients))
        #expect(h.engine.counter("dropsNoSendOp") == 0)
    }
}
