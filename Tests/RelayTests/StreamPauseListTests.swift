import STUN
import TURN
import Testing

@testable import Relay

/// The list of connections paused by the traffic limits
/// (StreamConnections.pause/unpause): each connection at most once, and
/// gone from the list when it resumes or closes, so a closed or reused
/// slot never leaves a stuck entry. No sockets: the table never touches
/// the descriptors it is given.
@Suite struct StreamPauseListTests {
    let tuple = FiveTuple(
        client: TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: 40000),
        server: TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: 3480), transport: .tcp)
    let allocation = AllocationID(slot: 3, generation: 7)

    func listed(_ c: borrowing StreamConnections) -> [UInt32] {
        (0..<c.pausedCount).map { c.paused[$0] }.sorted()
    }

    @Test func pausedOnceAndUnlistedOnResume() {
        var c = StreamConnections(capacity: 4, outboxCapacity: 64)
        let a = c.open(fd: 1000, fiveTuple: tuple, tls: nil, now: 0)!
        let b = c.open(fd: 1001, fiveTuple: tuple, tls: nil, now: 0)!
        c.pause(a, allocation: allocation, toPeer: true)
        c.pause(a, allocation: allocation, toPeer: false)  // already paused: unchanged
        c.pause(b, allocation: allocation, toPeer: false)
        #expect(listed(c) == [a, b].sorted())
        #expect(c.slots[Int(a)].paused && c.slots[Int(a)].pausedToPeer)
        #expect(c.slots[Int(a)].pausedAllocation == allocation)
        c.unpause(a)
        #expect(listed(c) == [b])
        #expect(!c.slots[Int(a)].paused && c.slots[Int(b)].paused)
        c.unpause(b)
        #expect(c.pausedCount == 0)
    }

    @Test func closingAPausedConnectionUnlistsItAndItsSlotIsReusable() {
        var c = StreamConnections(capacity: 1, outboxCapacity: 64)
        let a = c.open(fd: 1000, fiveTuple: tuple, tls: nil, now: 0)!
        c.pause(a, allocation: allocation, toPeer: true)
        c.markClosed(a)
        #expect(c.pausedCount == 0)
        // Nothing in flight: the slot is free again, and not paused.
        let again = c.open(fd: 1002, fiveTuple: tuple, tls: nil, now: 1)
        #expect(again == a)
        #expect(c.slots[Int(a)].paused == false)
        c.pause(a, allocation: allocation, toPeer: false)
        #expect(listed(c) == [a])
        c.markClosed(a)
        #expect(c.pausedCount == 0)
    }

    @Test func aClosedConnectionWithAReceiveInFlightIsUnlistedAtOnce() {
        var c = StreamConnections(capacity: 2, outboxCapacity: 64)
        let a = c.open(fd: 1000, fiveTuple: tuple, tls: nil, now: 0)!
        c.slots[Int(a)].receiving = true
        c.pause(a, allocation: allocation, toPeer: true)
        c.markClosed(a)
        // The slot waits for its receive's completion; the list does not.
        #expect(c.pausedCount == 0)
        #expect(c.open(fd: 1001, fiveTuple: tuple, tls: nil, now: 0) != a)
        c.slots[Int(a)].receiving = false
        c.releaseIfDone(a)
        #expect(c.open(fd: 1002, fiveTuple: tuple, tls: nil, now: 0) == a)
    }
}
