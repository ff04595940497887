import STUN
import TURN
import Testing

@testable import Relay

/// The per-worker table of requests waiting for an on-miss user lookup:
/// bounded, deduplicated by name (one lookup per name) and by transaction
/// (a retransmission is not parked twice), and aged out by the caller's clock.
@Suite struct PendingLookupsTests {
    static func tuple(_ port: UInt16) -> FiveTuple {
        FiveTuple(
            client: TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: port),
            server: TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: 3480))
    }

    /// A 20-byte STUN header with transaction ID bytes all `id`.
    static func request(_ id: UInt8, extra: Int = 0) -> [UInt8] {
        [0x00, 0x03, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: id, count: 12)
            + [UInt8](repeating: 0, count: extra)
    }

    static func park(
        _ table: inout PendingLookups, _ bytes: [UInt8], user: String, port: UInt16, at now: UInt64
    ) -> PendingLookups.ParkResult {
        bytes.withUnsafeBytes { table.park($0, username: user, fiveTuple: tuple(port), listenerFD: 7, now: now) }
    }

    @Test func oneLookupPerNameAndRetransmissionsNotParkedTwice() {
        var t = PendingLookups(capacity: 4)
        #expect(Self.park(&t, Self.request(1), user: "alice", port: 1000, at: 0) == .parked(slot: 0, askLookup: true))
        // Same client, same transaction: a retransmission.
        #expect(Self.park(&t, Self.request(1), user: "alice", port: 1000, at: 1) == .duplicate)
        // Another request for the same name waits for the same lookup.
        #expect(Self.park(&t, Self.request(2), user: "alice", port: 1001, at: 1) == .parked(slot: 1, askLookup: false))
        #expect(Self.park(&t, Self.request(3), user: "bob", port: 1002, at: 1) == .parked(slot: 2, askLookup: true))
        #expect(t.count == 3)
        // The answer for alice takes both of hers, with their bytes and addresses.
        var taken: [UInt16] = []
        while let slot = t.next(for: "alice") {
            let r = t.request(slot)
            #expect(r.count == 20 && r[8] == UInt8(taken.isEmpty ? 1 : 2))
            taken.append(t.entry(slot).fiveTuple.client.port)
            #expect(t.entry(slot).listenerFD == 7)
            t.release(slot)
        }
        #expect(taken == [1000, 1001])
        #expect(t.count == 1 && t.next(for: "bob") == 2)
        // After the answer a new request for alice asks again.
        #expect(Self.park(&t, Self.request(4), user: "alice", port: 1000, at: 2) == .parked(slot: 0, askLookup: true))
    }

    @Test func boundedAndTooLargeRefused() {
        var t = PendingLookups(capacity: 2)
        #expect(Self.park(&t, Self.request(1), user: "a", port: 1, at: 0) == .parked(slot: 0, askLookup: true))
        #expect(Self.park(&t, Self.request(2), user: "b", port: 2, at: 0) == .parked(slot: 1, askLookup: true))
        #expect(Self.park(&t, Self.request(3), user: "c", port: 3, at: 0) == .full)
        #expect(t.count == 2)
        t.release(0)
        t.release(0)  // twice is harmless
        #expect(t.count == 1)
        #expect(Self.park(&t, Self.request(3), user: "c", port: 3, at: 0) == .parked(slot: 0, askLookup: true))
        var big = PendingLookups(capacity: 1)
        #expect(
            Self.park(&big, Self.request(1, extra: PendingLookups.slotBytes), user: "a", port: 1, at: 0) == .tooLarge)
        #expect(Self.park(&big, [0, 1, 2], user: "a", port: 1, at: 0) == .tooLarge)
        #expect(big.count == 0)
    }

    @Test func timeoutTakesOnlyOldEntries() {
        var t = PendingLookups(capacity: 4)
        _ = Self.park(&t, Self.request(1), user: "old", port: 1, at: 100)
        _ = Self.park(&t, Self.request(2), user: "new", port: 2, at: 150)
        #expect(t.nextExpired(now: 149, timeout: 50) == nil)
        #expect(t.nextExpired(now: 150, timeout: 50) == 0)
        t.release(0)
        #expect(t.nextExpired(now: 150, timeout: 50) == nil)
        #expect(t.nextExpired(now: 200, timeout: 50) == 1)
    }

    @Test func unknownUsersRememberedUntilExpiryAndBounded() {
        var u = UnknownUsers(capacity: 2)
        u.insert("x", until: 10, now: 0)
        #expect(u.contains("x", now: 9))
        #expect(!u.contains("x", now: 10))
        #expect(!u.contains("y", now: 0))
        u.insert("y", until: 20, now: 0)
        u.insert("z", until: 30, now: 0)  // full: replaces x, the first to expire
        #expect(!u.contains("x", now: 0) && u.contains("y", now: 0) && u.contains("z", now: 0))
    }
}
