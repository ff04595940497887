import Glibc
import Relay
import STUN
import TURN
import Testing
import URing

/// RFC 8016 moves with two workers: SO_REUSEPORT gives some of the client's
/// new ports to the worker that does not own the allocation, which hands
/// the Refresh over; the owner then receives the client on a connected socket.
@Suite("Engine: mobility across workers", .serialized)
struct EngineMobilityTests {
    static let channel: UInt16 = 0x4001

    static func ticketRequest(_ tc: TURNClient, _ method: STUNMethod, ticket: [UInt8]) -> [UInt8] {
        tc.request(method) { e throws(STUNError) in
            if method == .allocate { try e.appendRequestedTransport(17) } else { try e.appendLifetime(600) }
            var failure: STUNError?
            ticket.withUnsafeBytes { b in
                do throws(STUNError) { try e.append(.mobilityTicket, bytes: b) } catch { failure = error }
            }
            if let failure { throw failure }
        }
    }

    static func ticket(_ reply: [UInt8]) -> [UInt8]? {
        TURNClient.parse(reply) { $0.mobilityTicket.map { Array($0) } } ?? nil
    }

    /// One ChannelData round trip on this suite's channel.
    static func roundTrip(
        _ h: EngineHarness, client: TestSocket, peer: TestSocket, relayed: TransportAddress, _ payload: [UInt8]
    ) throws {
        try EngineRelayTests.roundTrip(h, client: client, peer: peer, relayed: relayed, channel: channel, payload)
    }

    @Test("moves to ports another worker receives keep relaying on the same channel")
    func movesAcrossWorkers() throws {
        let h = try EngineHarness(workers: 2, configureTURN: { $0.mobility = true })
        let first = try TestSocket()
        let peer = try TestSocket()
        var tc = TURNClient()
        try first.send(tc.request(.allocate, sign: false) { e throws(STUNError) in try e.appendRequestedTransport(17) }, to: h.server)
        let challenge = try #require(try first.receive())
        tc.nonce = try #require(TURNClient.parse(challenge.bytes) { $0.nonceBytes.map(Array.init) } ?? nil)
        try first.send(Self.ticketRequest(tc, .allocate, ticket: []), to: h.server)
        let allocated = try #require(try first.receive())
        let relayed = try #require(TURNClient.parse(allocated.bytes) { $0.xorRelayedAddress } ?? nil)
        var ticket = try #require(Self.ticket(allocated.bytes))
        try first.send(tc.request(.channelBind) { e throws(STUNError) in
            try e.appendChannelNumber(Self.channel)
            try e.append(.xorPeerAddress, xorAddress: peer.address)
        }, to: h.server)
        let bound = try #require(try first.receive())
        #expect(TURNClient.parse(bound.bytes) { $0.messageClass } == .successResponse)
        try Self.roundTrip(h, client: first, peer: peer, relayed: relayed, [1, 2, 3])

        // 16 new ports: the odds that all reach the owner are 2^-16.
        var clients = [first]
        for i in 0..<16 {
            let moved = try TestSocket()
            try moved.send(Self.ticketRequest(tc, .refresh, ticket: ticket), to: h.server)
            let reply = try #require(try moved.receive())
            #expect(TURNClient.parse(reply.bytes) { $0.messageClass } == .successResponse, "move \(i)")
            ticket = try #require(Self.ticket(reply.bytes))
            try Self.roundTrip(h, client: moved, peer: peer, relayed: relayed, [UInt8(i), 9, 9])
            clients.append(moved)
        }
        let across = h.logs.all.filter { $0.contains("moved across workers") }.count
        #expect(across >= 1)

        // The ports left behind are relayed nowhere.
        for old in clients.dropLast() { try old.send(EngineRelayTests.channelData(Self.channel, [7]), to: h.server) }
        #expect(try peer.receive() == nil)
    }
}
