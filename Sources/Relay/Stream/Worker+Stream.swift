import Glibc
import STUN
import TURN
import URing

// The worker's side of TURN over TCP and TLS: completions of the stream
// part's operations, frames routed through TURN like datagrams
// (Worker+Routing.swift), and what the part reports back (`events`). The
// connections themselves are the part's (StreamPart*.swift).
extension Worker {
    mutating func acceptCompleted(_ cqe: Completion, listener i: Int, now: MonotonicTime) {
        stream.acceptCompleted(cqe, listener: i, stopping: stopping, now: now, &reactor)
    }

    mutating func streamReceiveCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        if let id = cqe.bufferID {
            let h = ReceiveBuffers.handle(id: id, large: false)
            reactor.buffers.took(h)
            if cqe.result > 0 {
                if stream.beginReceive(
                    ud.slot, generation: ud.generation, bytes: reactor.buffers.base(h), count: Int(cqe.result),
                    buffer: h, partner: partner(of: ud.slot), now: now)
                {
                    routeFrames(ud.slot, now: now)
                } else if stream.isOpen(ud.slot, generation: ud.generation) {
                    // A data connection's bytes (relayed or held): under the limits.
                    chargeDataConnection(ud.slot, count: Int(cqe.result), now: now)
                }
            }
            reactor.buffers.release(h)
        }
        stream.receiveCompleted(cqe)
        handleStreamEvents(now: now)
    }

    /// Routes every whole frame the connection holds, one at a time.
    mutating func routeFrames(_ slot: UInt32, now: MonotonicTime) {
        while let frame = stream.nextFrame(slot) { streamFrame(slot, frame, now: now) }
        stream.endReceive(slot, partner: partner(of: slot))
    }

    /// One whole frame from a connection: the datagram path's dispatch.
    @inline(__always)
    mutating func streamFrame(_ slot: UInt32, _ frame: StreamFrame, now: MonotonicTime) {
        let bytes = frame.bytes
        // A ConnectionBind for another worker's CONNECTION-ID moves there.
        if bytes.count >= 20 && bytes[0] == 0x00 && bytes[1] == 0x0B
            && handOffIfForeign(slot, UnsafeRawBufferPointer(bytes))
        {
            return
        }
        fromClient(
            datagram: bytes, fiveTuple: stream[slot].fiveTuple, reply: .stream(slot), buffer: frame.buffer, now: now)
    }

    mutating func streamSendCompleted(_ cqe: Completion, now: MonotonicTime) {
        stream.sendCompleted(cqe, partner: partner(of: cqe.userData.slot), now: now)
        handleStreamEvents(now: now)
    }

    /// Peer data for a client connected over TCP/TLS: found through the
    /// allocation, queued on its connection.
    mutating func streamForward(
        allocation: AllocationID, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer, count: Int,
        payloadCount: Int
    ) {
        guard let slot = stream.connection(of: allocation) else {
            counters.add(.dropsNoRoute)
            return
        }
        if stream.queue(slot, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count) {
            turn.countToClient(allocation, bytes: payloadCount)
            counters.add(.packetsToClients)
            counters.add(.bytesToClients, prefixLength + count)
        }
    }

    /// End of a batch: one SEND per connection with queued bytes and none in
    /// flight, receives to arm again, held bytes of data connections moved on.
    mutating func flushStreams() {
        let n = stream.beginFlush()
        for k in 0..<n {
            let slot = stream.dirtySlot(k)
            stream.flush(slot, partner: partner(of: slot), &reactor)
        }
        if !stream.events.isEmpty { handleStreamEvents(now: Self.monotonicNow()) }
    }

    mutating func streamTick(now: MonotonicTime) {
        stream.tick(now: now, &reactor)
        handleStreamEvents(now: now)
    }

    /// Closes connection `slot` and ends what lived with it.
    mutating func closeStream(_ slot: UInt32, why: String?, quietly: StaticString = "") {
        stream.close(slot, why: why, quietly: quietly)
        handleStreamEvents(now: Self.monotonicNow())
    }

    /// At shutdown: every connection closed, listeners too.
    mutating func closeAllStreams() {
        stream.closeAll()
        handleStreamEvents(now: Self.monotonicNow())
    }

    /// Acts on what the stream part reported, oldest first. Acting may add
    /// more (closing a client connection closes its peer connections), and
    /// may call here again: each event is taken off the list before it is
    /// acted on, so none is handled twice. The list is short (one or two).
    mutating func handleStreamEvents(now: MonotonicTime) {
        while !stream.events.isEmpty {
            switch stream.events.removeFirst() {
            case .closed(let c):
                streamClosed(c, now: now)
            case .readyToHandOff(let slot):
                finishHandoff(slot)
            case .cancel(let target):
                reactor.submit(.cancel(target: target))
            }
        }
    }

    /// A connection closed: its data pair ends (RFC 6062), and the
    /// allocation made over it is deleted (RFC 8656 §3.1: an allocation
    /// lives as long as its control connection).
    mutating func streamClosed(_ c: StreamPart.ClosedConnection, now: MonotonicTime) {
        if c.pair != .max { dataConnectionClosed(c, now: now) }
        if let a = c.allocation, turn.isAllocation(a, of: c.fiveTuple), let removed = turn.removeAllocation(a) {
            closeRelays(of: removed)
            counters.add(.allocationsDeleted)
            logRemoved(removed, why: "closed with its connection")
            datagram.cancelClosedRelays(&reactor)
            closeConnectionsOfRemovedAllocations()
        }
    }
}
