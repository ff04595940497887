import STUN
import TURN
import URing

// The worker's side of pausing byte streams for the traffic limits
// (StreamPart+Pause.swift): charging what a data connection read, and
// resuming paused connections when their bucket has refilled.
extension Worker {
    /// `count` bytes read on RFC 6062 data connection `slot` (already
    /// relayed or held): charged to its pair's allocation, the direction
    /// being the side it was read on; reading pauses when the bucket is empty.
    @inline(__always)
    mutating func chargeDataConnection(_ slot: UInt32, count: Int, now: MonotonicTime) {
        guard turn.tables.limitsPackets else { return }
        let i = Int(slot)
        let p = stream.connections.slots[i].pair
        guard stream.connections.slots[i].fd >= 0, stream.connections.slots[i].role != .client, p != .max,
            tcpRelay.pairs[p].inUse
        else { return }
        let allocation = tcpRelay.pairs[p].allocation
        let toPeer = stream.connections.slots[i].role == .clientData
        if !turn.tables.charge(allocation, bytes: count, toPeer: toPeer, now: now) {
            pauseStream(slot, allocation: allocation, toPeer: toPeer, now: now)
        }
    }

    /// Pauses reading `slot` until `allocation`'s bucket refills.
    mutating func pauseStream(_ slot: UInt32, allocation: AllocationID, toPeer: Bool, now: MonotonicTime) {
        let delay = turn.tables.resumeDelay(allocation, toPeer: toPeer, now: now)
        stream.pause(slot, allocation: allocation, toPeer: toPeer, delay: delay, now: now, &reactor)
    }

    /// Resumes the paused connections whose bucket refilled (or whose
    /// allocation is gone), and sets when to look again at the others.
    /// Runs when the loop wakes at or after `stream.nextResume`.
    mutating func resumePausedStreams(now: MonotonicTime) {
        var next = UInt64.max
        var k = 0
        while k < stream.connections.pausedCount {
            let slot = stream.connections.paused[k]
            let c = stream.connections.slots[Int(slot)]
            let delay = turn.tables.resumeDelay(c.pausedAllocation, toPeer: c.pausedToPeer, now: now)
            if delay == 0 {
                // Swaps the last entry into k: look at k again.
                stream.resume(slot)
                continue
            }
            next = min(next, now.nanoseconds &+ StreamPart.clampedDelay(delay))
            k += 1
        }
        stream.nextResume = next
        if stream.connections.dirtyCount > 0 { flushStreams() }
        flushSubmissions()
    }
}
