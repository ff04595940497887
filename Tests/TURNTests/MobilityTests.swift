import STUN
import Testing

@testable import TURN

extension Reply {
    var mobilityTicket: [UInt8]? { with { $0.mobilityTicket.map(Array.init) } }
}

extension Harness {
    /// Allocate asking for mobility (an empty MOBILITY-TICKET).
    mutating func allocateMobile(_ client: inout TestClient) -> Reply {
        allocate(&client) { (e) throws(STUNError) in try e.append(.mobilityTicket, bytes: UnsafeRawBufferPointer(start: nil, count: 0)) }
    }

    /// Refresh carrying `ticket`.
    mutating func refresh(_ client: TestClient, ticket: [UInt8], lifetime: UInt32? = nil) -> Reply {
        send(
            client.request(.refresh) { (e) throws(STUNError) in
                if let lifetime { try e.appendLifetime(lifetime) }
                var failure: STUNError?
                ticket.withUnsafeBytes { b in
                    do throws(STUNError) { try e.append(.mobilityTicket, bytes: b) } catch { failure = error }
                }
                if let failure { throw failure }
            }, from: client)
    }
}

@Suite("RFC 8016 mobility tickets")
struct MobilityTicketCodecTests {
    let codec = MobilityTicketCodec(secret: Array(repeating: 7, count: 32))
    let ticket = MobilityTicket(worker: 3, allocation: AllocationID(slot: 12, generation: 5), counter: 9)

    @Test func sealedTicketOpensToWhatWasSealedAndHidesIt() {
        let sealed = codec.seal(ticket)
        #expect(sealed.count == MobilityTicketCodec.length)
        #expect(sealed.withUnsafeBytes { codec.open($0) } == ticket)
        // Two seals of the same ticket differ (fresh IV), so a ticket shows nothing.
        #expect(codec.seal(ticket) != sealed)
    }

    @Test func alteredTruncatedOrForeignTicketsDoNotOpen() {
        let sealed = codec.seal(ticket)
        for i in 0..<sealed.count {
            var bad = sealed
            bad[i] ^= 0x01
            #expect(bad.withUnsafeBytes { codec.open($0) } == nil, "byte \(i) flipped")
        }
        #expect(Array(sealed.dropLast()).withUnsafeBytes { codec.open($0) } == nil)
        let other = MobilityTicketCodec(secret: Array(repeating: 8, count: 32))
        #expect(sealed.withUnsafeBytes { other.open($0) } == nil)
        #expect([UInt8](repeating: 0, count: 48).withUnsafeBytes { codec.open($0) } == nil)
    }
}

@Suite("RFC 8016 mobility")
struct MobilityTests {
    static func mobile() -> Harness { Harness { $0.mobility = true } }

    @Test func allocateWithEmptyTicketGetsOneAndRefreshGetsANewOne() {
        var h = Self.mobile()
        var c = TestClient()
        let a = h.allocateMobile(&c)
        #expect(a.isSuccess)
        let t1 = a.mobilityTicket
        #expect(t1?.count == MobilityTicketCodec.length)
        let r = h.refresh(c, lifetime: 600)
        #expect(r.isSuccess)
        #expect(r.mobilityTicket != nil && r.mobilityTicket != t1)
        // An allocation made without asking gets no ticket.
        var d = TestClient("198.51.100.9:1000")
        let b = h.allocate(&d)
        #expect(b.isSuccess && !b.has(.mobilityTicket))
        #expect(!h.refresh(d, lifetime: 600).has(.mobilityTicket))
    }

    @Test func mobilityOffOrNotUDPGets405AndANonEmptyAllocateTicket400() {
        var off = Harness()
        var c = TestClient()
        #expect(off.allocateMobile(&c).errorCode == 405)
        #expect(off.allocationCount == 0)
        var h = Self.mobile()
        var t = TestClient()
        t.fiveTuple.transport = .tcp
        #expect(h.allocateMobile(&t).errorCode == 405)
        var u = TestClient()
        let r = h.allocate(&u) { (e) throws(STUNError) in try e.append(.mobilityTicket, uint32: 1) }
        #expect(r.errorCode == 400)
        #expect(h.allocationCount == 0)
    }

    @Test func refreshWithTheTicketFromANewPortMovesTheAllocationWithItsChannels() {
        var h = Self.mobile()
        var c = TestClient("198.51.100.7:40000")
        let a = h.allocateMobile(&c)
        let relayed = a.relayed
        let ticket = a.mobilityTicket!
        #expect(h.createPermission(c, ["8.8.4.4:1"]).isSuccess)
        #expect(h.channelBind(c, 0x4001, "8.8.8.8:5000").isSuccess)
        let id = h.server.allocation(for: c.fiveTuple)!
        let old = c.fiveTuple

        var moved = c
        moved.fiveTuple.client = TransportAddress("192.0.2.50:51000")!
        moved.nonce = []
        h.learnNonce(&moved)  // a new IP: the nonce is bound to the address
        let r = h.refresh(moved, ticket: ticket)
        #expect(r.isSuccess)
        #expect(r.outcome.effect == .allocationMoved(id, from: old))
        let next = r.mobilityTicket
        #expect(next != nil && next != ticket)

        // Same allocation, relayed address, channel and permissions; the old 5-tuple is dropped.
        #expect(h.server.allocation(for: moved.fiveTuple) == id)
        #expect(h.server.allocation(for: old) == nil)
        #expect(h.server.relayEndpoint(of: id, family: .v4)?.address == relayed.first)
        #expect(h.server.routeChannelData(channel: 0x4001, from: old, now: h.now) == nil)
        let route = h.server.routeChannelData(channel: 0x4001, from: moved.fiveTuple, now: h.now)
        #expect(route?.0 == id && route?.1 == TransportAddress("8.8.8.8:5000")!)
        #expect(h.server.routePeerData(to: id, from: TransportAddress("8.8.8.8:5000")!, now: h.now)
            == .channel(0x4001, client: moved.fiveTuple))
        #expect(h.server.routePeerData(to: id, from: TransportAddress("8.8.4.4:1")!, now: h.now)
            == .dataIndication(client: moved.fiveTuple))
        #expect(h.refresh(c, lifetime: 600).errorCode == 437)
        #expect(h.allocationCount == 1)
        // It moves again with the newest ticket, and back.
        let back = h.refresh(c, ticket: next!)
        #expect(back.isSuccess)
        #expect(h.server.allocation(for: old) == id)
    }

    @Test func retransmittedMoveGetsTheSameAnswer() {
        var h = Self.mobile()
        var c = TestClient()
        let ticket = h.allocateMobile(&c).mobilityTicket!
        var moved = c
        moved.fiveTuple.client.port = 40001
        let tid = TransactionID.random()
        let request = moved.request(.refresh, transactionID: tid) { (e) throws(STUNError) in
            var failure: STUNError?
            ticket.withUnsafeBytes { b in
                do throws(STUNError) { try e.append(.mobilityTicket, bytes: b) } catch { failure = error }
            }
            if let failure { throw failure }
        }
        let first = h.send(request, from: moved)
        #expect(first.isSuccess)
        let again = h.send(request, from: moved)
        #expect(again.bytes == first.bytes)
    }

    @Test func replayedForgedAndOtherUsersTicketsAreRefused() {
        var h = Self.mobile()
        var c = TestClient()
        let t1 = h.allocateMobile(&c).mobilityTicket!
        let t2 = h.refresh(c, lifetime: 600).mobilityTicket!
        let id = h.server.allocation(for: c.fiveTuple)!

        var thief = c
        thief.fiveTuple.client.port = 40001
        // An older ticket after a newer one was given out: a replay.
        #expect(h.refresh(thief, ticket: t1).errorCode == 400)
        // A forged ticket (one bit changed), and random bytes.
        var forged = t2
        forged[20] ^= 0x40
        #expect(h.refresh(thief, ticket: forged).errorCode == 400)
        #expect(h.refresh(thief, ticket: [UInt8](repeating: 0x5A, count: 48)).errorCode == 400)
        // Another user with the newest ticket: 441, and nothing moves.
        var bob = TestClient("198.51.100.7:40002")
        bob.username = "bob"
        bob.password = "hunter2"
        h.learnNonce(&bob)
        #expect(h.refresh(bob, ticket: t2).errorCode == 441)
        // A ticket sealed with another secret (another server).
        let foreign = MobilityTicketCodec(secret: Array(repeating: 1, count: 32)).seal(
            MobilityTicket(worker: 0, allocation: id, counter: 2))
        #expect(h.refresh(thief, ticket: foreign).errorCode == 400)
        #expect(h.server.allocation(for: c.fiveTuple) == id)
        #expect(h.server.allocation(for: thief.fiveTuple) == nil)
        // The owner still moves with the newest ticket; then that ticket is spent.
        #expect(h.refresh(thief, ticket: t2).isSuccess)
        var third = c
        third.fiveTuple.client.port = 40003
        #expect(h.refresh(third, ticket: t2).errorCode == 400)
    }

    @Test func ticketOfAnotherWorkerOrADeletedAllocationGets437() {
        var h = Self.mobile()
        var c = TestClient()
        let ticket = h.allocateMobile(&c).mobilityTicket!
        var moved = c
        moved.fiveTuple.client.port = 40001
        var other = Self.mobile()
        other.server.configuration.mobilityTickets = h.server.configuration.mobilityTickets
        other.server.setWorkerIndex(1, of: 2)
        var d = TestClient("198.51.100.7:40005")
        d.nonce = c.nonce
        let t = other.allocateMobile(&d).mobilityTicket!
        // h is a single worker: a ticket naming worker 1 names no worker.
        #expect(h.refresh(moved, ticket: t).errorCode == 437)
        #expect(h.refresh(c, lifetime: 0).isSuccess)
        #expect(h.refresh(moved, ticket: ticket).errorCode == 437)
    }

    @Test func ticketOfAnotherWorkerIsHandedToItUnanswered() {
        var owner = Self.mobile()
        owner.server.setWorkerIndex(1, of: 2)
        var c = TestClient()
        let ticket = owner.allocateMobile(&c).mobilityTicket!
        var other = Self.mobile()
        other.server.configuration.mobilityTickets = owner.server.configuration.mobilityTickets
        other.server.setWorkerIndex(0, of: 2)
        var moved = c
        moved.fiveTuple.client.port = 40001
        let r = other.refresh(moved, ticket: ticket)
        #expect(r.outcome.responseLength == 0)
        #expect(r.outcome.effect == .forwardMove(toWorker: 1))
        // A forged ticket is refused where it lands.
        var forged = ticket
        forged[20] ^= 1
        #expect(other.refresh(moved, ticket: forged).errorCode == 400)
    }

    @Test func handedOverMoveWithoutASocketGets508AndStaysPut() {
        var h = Self.mobile()
        h.server.setWorkerIndex(1, of: 2)
        var c = TestClient()
        let ticket = h.allocateMobile(&c).mobilityTicket!
        let id = h.server.allocation(for: c.fiveTuple)!
        var moved = c
        moved.fiveTuple.client.port = 40001
        h.server.crossWorkerMoveSocket = false
        #expect(h.refresh(moved, ticket: ticket).errorCode == 508)
        #expect(h.server.allocation(for: c.fiveTuple) == id)
        #expect(h.server.allocation(for: moved.fiveTuple) == nil)
        h.server.crossWorkerMoveSocket = true
        var again = moved
        again.fiveTuple.client.port = 40002
        let r = h.refresh(again, ticket: ticket)
        #expect(r.isSuccess)
        #expect(h.server.allocation(for: again.fiveTuple) == id)
    }

    @Test func aReloadKeepsTheTicketSecretAndCanTurnMobilityOff() {
        var h = Self.mobile()
        var c = TestClient()
        let ticket = h.allocateMobile(&c).mobilityTicket!
        var reloaded = h.server.configuration
        reloaded.mobilityTickets = MobilityTicketCodec(secret: Array(repeating: 2, count: 32))
        h.server.reconfigure(reloaded)
        var moved = c
        moved.fiveTuple.client.port = 40001
        let r = h.refresh(moved, ticket: ticket)
        #expect(r.isSuccess)
        reloaded.mobility = false
        h.server.reconfigure(reloaded)
        var again = c
        again.fiveTuple.client.port = 40002
        #expect(h.refresh(again, ticket: r.mobilityTicket!).errorCode == 405)
        let plain = h.refresh(moved, lifetime: 600)
        #expect(plain.isSuccess && !plain.has(.mobilityTicket))
    }

    @Test func aRefusedMoveLeavesTheAllocationAndLifetimeZeroDeletesIt() {
        var h = Self.mobile()
        var c = TestClient()
        let ticket = h.allocateMobile(&c).mobilityTicket!
        let id = h.server.allocation(for: c.fiveTuple)!
        var moved = c
        moved.fiveTuple.client.port = 40001
        // An IPv6 family on an IPv4-only allocation: 443, and nothing moves.
        let wrongFamily = h.send(
            moved.request(.refresh) { (e) throws(STUNError) in
                try e.appendAddressFamily(.requestedAddressFamily, family: 0x02)
                var failure: STUNError?
                ticket.withUnsafeBytes { b in
                    do throws(STUNError) { try e.append(.mobilityTicket, bytes: b) } catch { failure = error }
                }
                if let failure { throw failure }
            }, from: moved)
        #expect(wrongFamily.errorCode == 443)
        #expect(h.server.allocation(for: c.fiveTuple) == id)
        // The same ticket, LIFETIME 0, from the new port: moved and deleted.
        let r = h.refresh(moved, ticket: ticket, lifetime: 0)
        #expect(r.isSuccess && !r.has(.mobilityTicket))
        guard case .allocationDeleted(let removed) = r.outcome.effect else {
            Issue.record("expected a deletion, got \(r.outcome.effect)")
            return
        }
        #expect(removed.id == id && removed.fiveTuple == moved.fiveTuple)
        #expect(h.allocationCount == 0)
    }

    @Test func moveToA5TupleThatHasAnAllocationIsRefused() {
        var h = Self.mobile()
        var c = TestClient("198.51.100.7:40000")
        let ticket = h.allocateMobile(&c).mobilityTicket!
        var d = TestClient("198.51.100.7:40001")
        d.nonce = c.nonce
        #expect(h.allocate(&d).isSuccess)
        // From d's 5-tuple the Refresh is d's own refresh: the ticket names
        // another allocation, so nothing moves.
        let r = h.refresh(d, ticket: ticket)
        #expect(h.server.allocation(for: c.fiveTuple) != nil)
        #expect(h.allocationCount == 2)
        #expect(r.outcome.effect == .none)
    }
}
