import Glibc
@testable import Relay
import STUN
import Synchronization
import TURN
import Testing
import URing

/// The admin commands through a real engine: each worker answers through
/// its inbox for its own allocations.
@Suite("Admin commands reach the workers", .serialized)
struct EngineAdminTests {
    /// Sends `command` and waits for the answers (at most 5 s, then takes
    /// what arrived: a missing worker then shows in `missing`).
    static func ask(_ engine: Engine, _ command: AdminCommand, worker: Int? = nil) throws -> AdminResult {
        let box = Mutex<AdminResult?>(nil)
        let replies = engine.admin(command, worker: worker) { r in box.withLock { $0 = r } }
        for _ in 0..<500 {
            if let r = box.withLock({ $0 }) { return r }
            usleep(10_000)
        }
        replies.expire()
        return try #require(box.withLock { $0 })
    }

    @Test("sessions list users, 5-tuples, channels and counters; disconnect ends exactly one user's")
    func listAndDisconnect() throws {
        let h = try EngineHarness(workers: 2)
        let alice = try TestSocket(), bob = try TestSocket(), peer = try TestSocket()
        var ta = TURNClient()
        var tb = TURNClient()
        tb.username = "bob"
        let relayA = try EngineRelayTests.allocate(h, client: alice, tc: &ta, peer: peer.address, channel: 0x4000)
        let relayB = try EngineRelayTests.allocate(h, client: bob, tc: &tb, peer: peer.address, channel: 0x4001)
        for i in 0..<3 {
            try alice.send(EngineRelayTests.channelData(0x4000, [UInt8](repeating: UInt8(i), count: 100)), to: h.server)
            #expect(try peer.receive()?.bytes.count == 100)
            try peer.send([UInt8](repeating: 1, count: 40), to: relayA)
            #expect(try alice.receive()?.bytes.count == 44)
        }
        try bob.send(EngineRelayTests.channelData(0x4001, [9, 9]), to: h.server)
        #expect(try peer.receive()?.bytes == [9, 9])

        let all = try Self.ask(h.engine, .sessions(user: nil))
        #expect(all.missing.isEmpty)
        #expect(all.answers.map(\.worker) == [0, 1])
        #expect(Set(all.sessions.map(\.username)) == ["alice", "bob"])
        let a = try #require(all.sessions.first { $0.username == "alice" })
        #expect(a.fiveTuple.client == alice.address)
        #expect(a.fiveTuple.server == h.server)
        #expect(a.fiveTuple.transport == .udp)
        #expect(a.relayV4 == relayA)
        #expect(a.channels.map(\.number) == [0x4000])
        #expect(a.channels.first?.peer == peer.address)
        #expect(a.permissions.map(\.peer) == [peer.address.ip])
        #expect(a.counters.packetsToPeer == 3)
        #expect(a.counters.bytesToPeer == 300)
        #expect(a.counters.packetsToClient == 3)
        #expect(a.counters.bytesToClient == 120)
        #expect(a.expiresIn > 0)

        let onlyBob = try Self.ask(h.engine, .sessions(user: "bob"))
        #expect(onlyBob.sessions.map(\.username) == ["bob"])
        #expect(onlyBob.sessions.first?.relayV4 == relayB)
        #expect(onlyBob.sessions.first?.counters.packetsToPeer == 1)
        #expect(try Self.ask(h.engine, .sessions(user: "carol")).sessions.isEmpty)

        let ended = try Self.ask(h.engine, .disconnectUser("alice"))
        #expect(ended.sessions.map(\.username) == ["alice"])
        // alice's allocation is gone: her Refresh gets 437 and her data goes nowhere...
        try alice.send(ta.request(.refresh) { e throws(STUNError) in try e.appendLifetime(600) }, to: h.server)
        let refused = try #require(try alice.receive())
        #expect(TURNClient.parse(refused.bytes) { $0.errorCode?.code } == 437)
        try alice.send(EngineRelayTests.channelData(0x4000, [1]), to: h.server)
        // ...while bob keeps relaying both ways (and the peer sees bob's datagram, not alice's).
        try bob.send(EngineRelayTests.channelData(0x4001, [2]), to: h.server)
        #expect(try peer.receive()?.bytes == [2])
        try peer.send([3], to: relayB)
        #expect(try bob.receive()?.bytes == EngineRelayTests.channelData(0x4001, [3]))
        #expect(try Self.ask(h.engine, .sessions(user: nil)).sessions.map(\.username) == ["bob"])
        #expect(try Self.ask(h.engine, .disconnectUser("alice")).sessions.isEmpty)
        #expect(h.logs.all.contains { $0.contains("allocation ended by the admin API") && $0.contains("user alice") })
    }

    @Test("one session ends by its id; a stale id ends nothing")
    func disconnectOne() throws {
        let h = try EngineHarness(workers: 1)
        let client = try TestSocket(), peer = try TestSocket()
        var tc = TURNClient()
        _ = try EngineRelayTests.allocate(h, client: client, tc: &tc, peer: peer.address, channel: 0x4000)
        let s = try #require(try Self.ask(h.engine, .sessions(user: nil)).sessions.first)
        #expect(try Self.ask(h.engine, .disconnectSession(s.id), worker: 0).sessions.map(\.id) == [s.id])
        #expect(try Self.ask(h.engine, .disconnectSession(s.id), worker: 0).sessions.isEmpty)
        #expect(try Self.ask(h.engine, .sessions(user: nil)).sessions.isEmpty)
    }

    @Test("the gatherer completes once: when all answered, or with the missing workers at expiry")
    func gatherer() {
        let calls = Mutex<[AdminResult]>([])
        let r = AdminReplies(workers: [0, 1, 2]) { result in calls.withLock { $0.append(result) } }
        r.deliver(WorkerAnswer(worker: 1, sessions: []))
        #expect(calls.withLock { $0.isEmpty })
        r.giveUp(on: 2)
        r.expire()
        r.deliver(WorkerAnswer(worker: 0, sessions: []))  // too late: dropped
        r.expire()
        let got = calls.withLock { $0 }
        #expect(got.count == 1)
        #expect(got.first?.answers.map(\.worker) == [1])
        #expect(got.first?.missing == [0, 2])

        let all = Mutex(0)
        let s = AdminReplies(workers: [0, 1]) { _ in all.withLock { $0 += 1 } }
        s.deliver(WorkerAnswer(worker: 1, sessions: []))
        s.deliver(WorkerAnswer(worker: 1, sessions: []))  // twice from one worker counts once
        #expect(all.withLock { $0 } == 0)
        s.deliver(WorkerAnswer(worker: 0, sessions: []))
        s.expire()
        #expect(all.withLock { $0 } == 1)
    }
}
