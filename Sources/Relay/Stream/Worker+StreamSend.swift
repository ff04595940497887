import Glibc
import STUN
import TURN
import URing

// TURN over TCP and TLS, the sending half: queueing messages for a
// connection (encrypted first over TLS), one SEND per connection at the end
// of a batch, and closing connections and their timers. The receiving half
// is Worker+StreamReceive.swift.
extension Worker {
    // MARK: Sending

    /// Queues one message for the client on connection `slot`: `prefix`
    /// (a header built outside the buffers), then `bytes`, then zeros up to
    /// a multiple of 4 (ChannelData over a stream is padded, RFC 8656
    /// §12.5; STUN messages already are). Over TLS it is encrypted first.
    /// A message that does not fit the outbox is dropped whole.
    @discardableResult
    mutating func streamQueue(
        _ slot: UInt32, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer, count: Int,
        raw: Bool = false
    ) -> Bool {
        let i = Int(slot)
        guard stream.connections.slots[i].fd >= 0 else { return false }
        let total = prefixLength + count
        // Raw bytes of a data connection (RFC 6062) are not padded, and a
        // full outbox is not a drop: the caller keeps them.
        let padding = raw ? 0 : (4 - (total & 3)) & 3
        guard let tls = stream.connections.slots[i].tls else {
            guard total + padding <= stream.connections.slots[i].outboxFree else {
                if !raw { counters.add(.streamDropsFull) }
                return false
            }
            noteOutboxFilling(slot)
            if let p = prefix { stream.connections.slots[i].append(p, count: prefixLength) }
            stream.connections.slots[i].append(bytes, count: count)
            stream.connections.slots[i].appendZeros(padding)
            stream.connections.markDirty(slot)
            counters.add(.bytesToStreams, total + padding)
            return true
        }
        guard tls.isHandshakeComplete, total + padding <= stream.plainScratch.count else { return false }
        // Room for the records' framing too: at most 16 KiB of plaintext
        // per record, each costing well under 64 bytes of header and tag.
        let records = (total + padding) / 16_384 + 1
        guard total + padding + records * 64 <= stream.connections.slots[i].outboxFree else {
            if !raw { counters.add(.streamDropsFull) }
            return false
        }
        let plain = stream.plainScratch.baseAddress!
        if let p = prefix { plain.copyMemory(from: p, byteCount: prefixLength) }
        (plain + prefixLength).copyMemory(from: bytes, byteCount: count)
        (plain + total).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
        var written = 0
        var rounds = 0
        while written < total + padding {
            rounds += 1
            let n: Int
            do throws(TLSError) {
                n = try stream.connections.slots[i].tls!.writePlaintext(
                    UnsafeRawBufferPointer(start: plain + written, count: total + padding - written))
            } catch {
                counters.add(.tlsFailures)
                closeStream(slot, why: "TLS: \(error); closing")
                return false
            }
            written += n
            guard drainCiphertext(slot) else { return false }
            if n == 0 && rounds > 4 {
                closeStream(slot, why: "TLS: the session takes no more plaintext; closing")
                return false
            }
        }
        counters.add(.bytesToStreams, total + padding)
        return true
    }

    /// The stall timer counts from when the outbox stops being empty.
    @inline(__always)
    mutating func noteOutboxFilling(_ slot: UInt32) {
        if stream.connections.slots[Int(slot)].outboxCount == 0 && stream.connections.slots[Int(slot)].sending == 0 {
            stream.connections.slots[Int(slot)].lastSendProgress = nowSeconds
        }
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
        if streamQueue(slot, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count) {
            turn.countToClient(allocation, bytes: payloadCount)
            counters.add(.packetsToClients)
            counters.add(.bytesToClients, prefixLength + count)
        }
    }

    /// End of a batch: one SEND per connection with queued bytes and none in
    /// flight, and receives to arm again.
    mutating func flushStreams() {
        let n = stream.connections.beginFlush()
        for k in 0..<n {
            let slot = stream.connections.dirty[k]
            stream.connections.clearDirty(slot)
            if stream.connections.slots[Int(slot)].role != .client {
                flushDataConnection(slot)
            } else if stream.connections.slots[Int(slot)].needsReceive && !stream.connections.slots[Int(slot)].receiving
                && !stream.connections.slots[Int(slot)].handingOff
            {
                armStreamReceive(slot)
            }
            let c = stream.connections.slots[Int(slot)]
            guard c.fd >= 0 else { continue }
            guard c.sending == 0, let (bytes, count) = c.sendableRun else { continue }
            let ud = UserData(kind: .streamSend, slot: slot, generation: c.generation)
            reactor.submit(.streamSend(socket: c.fd, bytes: bytes, count: count, userData: ud))
            stream.connections.slots[Int(slot)].sending = count
        }
    }

    mutating func streamSendCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        let slot = ud.slot
        guard Int(slot) < stream.connections.capacity, stream.connections.slots[Int(slot)].generation == ud.generation else { return }
        stream.connections.slots[Int(slot)].sending = 0
        guard stream.connections.slots[Int(slot)].fd >= 0 else {
            stream.connections.releaseIfDone(slot)
            return
        }
        guard cqe.result > 0 else {
            let ordinary = cqe.result == 0 || cqe.result == -EPIPE || cqe.result == -ECONNRESET
            closeStream(slot, why: ordinary ? nil : "send failed: \(Errno(rawValue: -cqe.result))", quietly: "send: the other end closed")
            return
        }
        stream.connections.slots[Int(slot)].consumeSent(Int(cqe.result))
        stream.connections.slots[Int(slot)].lastSendProgress = now.seconds
        if stream.connections.slots[Int(slot)].handingOff {
            finishHandoff(slot)
            return
        }
        if stream.connections.slots[Int(slot)].outboxCount > 0 { stream.connections.markDirty(slot) }
        if stream.connections.slots[Int(slot)].role != .client {
            // Room again: the partner may move what it holds and read on.
            if let p = stream.connections.partner(of: slot) { stream.connections.markDirty(p) }
            if stream.connections.slots[Int(slot)].outboxCount == 0 && stream.connections.slots[Int(slot)].closeWhenDrained {
                closeStream(slot, why: nil, quietly: "partner ended, queue sent")
            }
        }
    }

    // MARK: Closing and timers

    /// Closes connection `slot`: shuts the socket down (its receive ends
    /// with 0, a send in flight fails), closes it, and deletes the
    /// allocation made over it (RFC 8656 §3.1: the allocation lives as
    /// long as its control connection). The slot's memory is freed when the
    /// kernel is done with it. `why` nil: an ordinary close, not logged.
    mutating func closeStream(_ slot: UInt32, why: String?, quietly: StaticString = "") {
        let c = stream.connections.slots[Int(slot)]
        guard c.fd >= 0 else { return }
        // Logged first, so whoever sees the connection end can find why.
        let name = c.role == .client ? (c.fiveTuple.transport == .tls ? "TLS" : "TCP") : "\(c.role) data"
        if let why {
            log(.info, "connection \(c.fiveTuple.client) \(name): \(why)")
        } else {
            log(.debug, "connection \(c.fiveTuple.client) \(name): closed (\(quietly))")
        }
        Syscall.shutdownBoth(c.fd)
        if c.receiving {
            reactor.submit(.cancel(target: UserData(kind: .streamReceive, slot: slot, generation: c.generation)))
        }
        Syscall.close(c.fd)
        if c.role != .client { dataConnectionClosed(slot, c) }
        if let a = c.allocation, turn.isAllocation(a, of: c.fiveTuple), let removed = turn.removeAllocation(a) {
            closeRelays(of: removed)
            counters.add(.allocationsDeleted)
            logRemoved(removed, why: "closed with its connection")
            datagram.cancelClosedRelays(&reactor)
            closeConnectionsOfRemovedAllocations()
        }
        counters.add(.streamClosed)
        stream.connections.markClosed(slot)
    }

    /// Once a second: handshakes that take too long, connections idle
    /// without an allocation, clients that stopped reading; and accepts
    /// that must be armed again.
    mutating func streamTick(now: MonotonicTime) {
        let t = now.seconds
        for i in 0..<stream.connections.capacity where stream.connections.slots[i].fd >= 0 {
            let c = stream.connections.slots[i]
            let slot = UInt32(i)
            if c.role != .client {
                // Data connections: bounded by back-pressure, ended with their
                // allocation; only a CONNECT that hangs is cut short here.
                if c.connecting && t &- c.opened >= UInt32(TCPRelayPart.connectTimeoutSeconds) {
                    reactor.submit(.cancel(target: UserData(kind: .streamConnect, slot: slot, generation: c.generation)))
                } else if c.closeWhenDrained && t &- c.lastSendProgress >= UInt32(stream.limits.stallSeconds) {
                    // Its partner is gone and its own reader takes nothing.
                    closeStream(slot, why: "\(c.role) data: the other end closed and this one reads nothing; closing")
                }
                continue
            }
            if let tls = c.tls, !tls.isHandshakeComplete, t &- c.opened >= UInt32(stream.limits.handshakeSeconds) {
                counters.add(.streamTimeouts)
                closeStream(slot, why: "TLS handshake not finished in \(stream.limits.handshakeSeconds) s; closing")
            } else if c.outboxCount > 0 && t &- c.lastSendProgress >= UInt32(stream.limits.stallSeconds) {
                counters.add(.streamTimeouts)
                closeStream(
                    slot,
                    why: "client reads nothing for \(stream.limits.stallSeconds) s with \(c.outboxCount) bytes queued; closing")
            } else if (c.allocation.map { !turn.isLive($0) } ?? true)
                && t &- c.lastReceive >= UInt32(stream.limits.idleSeconds)
            {
                counters.add(.streamTimeouts)
                closeStream(slot, why: "idle for \(stream.limits.idleSeconds) s without an allocation; closing")
            }
        }
        for i in 0..<stream.listeners.count where stream.listeners[i].acceptAtTick {
            stream.listeners[i].acceptAtTick = false
            stream.listeners[i].needsAccept = true
        }
        rearmStreamListeners()
    }

    /// Arms the accepts that ended (part of `rearmReceives`, and the tick's).
    mutating func rearmStreamListeners() {
        for i in 0..<stream.listeners.count where stream.listeners[i].needsAccept {
            stream.listeners[i].needsAccept = false
            armStreamListener(i)
        }
    }

    /// At shutdown: every connection closed, listeners too.
    mutating func closeAllStreams() {
        for i in 0..<stream.connections.capacity where stream.connections.slots[i].fd >= 0 { closeStream(UInt32(i), why: nil) }
        for i in 0..<stream.listeners.count where stream.listeners[i].fd >= 0 {
            Syscall.close(stream.listeners[i].fd)
            stream.listeners[i].fd = -1
        }
    }
}
