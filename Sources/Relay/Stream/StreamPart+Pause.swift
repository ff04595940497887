import STUN
import TURN
import URing

// Back-pressure from the traffic limits (issue #15) on byte streams. Bytes
// read from a TCP or TLS client connection, or from either side of an RFC
// 6062 data pair, are charged to their allocation's byte bucket and always
// relayed (they were read: dropping them would lose stream bytes). When the
// charge empties the bucket, the connection stops reading: no receive is
// armed again (a multishot one is cancelled), so the kernel's socket buffer
// fills and TCP's flow control slows the sender. The worker's loop wakes
// at `nextResume` and resumes those whose bucket refilled
// (Worker+Pause.swift). The list of paused connections lives in
// StreamConnections; a connection leaves it when it resumes or closes.
extension StreamPart {
    /// Stops reading `slot` until the bucket of `allocation` in the direction
    /// given refills, in about `delay` nanoseconds.
    mutating func pause(
        _ slot: UInt32, allocation: AllocationID, toPeer: Bool, delay: UInt64, now: MonotonicTime, _ reactor: inout Reactor
    ) {
        let i = Int(slot)
        guard connections.slots[i].fd >= 0, !connections.slots[i].paused else { return }
        connections.pause(slot, allocation: allocation, toPeer: toPeer)
        counters.add(toPeer ? .policyPausedToPeer : .policyPausedToClient)
        noteResume(at: now.nanoseconds &+ Self.clampedDelay(delay))
        // Single-shot receives (data connections; client connections under
        // a byte limit) simply are not armed again. A multishot one (should
        // a pause come without a byte limit configured at start) goes on
        // delivering until cancelled; its last completion (-ECANCELED)
        // leaves it waiting to be armed, which `armReceive` refuses while paused.
        let c = connections.slots[i]
        if c.receiving && reactor.multishot && c.role == .client && !singleShotClients {
            reactor.submit(.cancel(target: UserData(kind: .streamReceive, slot: slot, generation: c.generation)))
        }
    }

    /// Reads on `slot` again: its receive is armed at the next flush.
    mutating func resume(_ slot: UInt32) {
        connections.unpause(slot)
        connections.slots[Int(slot)].needsReceive = true
        connections.markDirty(slot)
    }

    /// The loop wakes at `at` (monotonic nanoseconds) at the latest.
    mutating func noteResume(at: UInt64) { nextResume = min(nextResume, at) }

    /// Between a millisecond (no tighter wake-ups) and a second (rates are
    /// recomputed once a second and may have risen).
    static func clampedDelay(_ ns: UInt64) -> UInt64 { min(max(ns, 1_000_000), 1_000_000_000) }
}
