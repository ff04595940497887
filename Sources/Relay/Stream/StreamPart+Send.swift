import Glibc
import STUN
import TURN
import URing

// Sending on a connection: messages are copied into the connection's outbox
// (encrypted first over TLS) and sent one SEND at a time from there, at the
// end of the batch. A full outbox drops messages whole (never part of one,
// which would break the framing).
extension StreamPart {
    /// Queues one message for connection `slot`: `prefix` (a header built
    /// outside the buffers), then `bytes`, then zeros up to a multiple of 4
    /// (ChannelData over a stream is padded, RFC 8656 §12.5; STUN messages
    /// already are). Over TLS it is encrypted first. A message that does not
    /// fit the outbox is dropped whole. `raw`: bytes of a data connection
    /// (RFC 6062), not padded, and a full outbox is not a drop (the caller
    /// keeps them).
    @discardableResult
    mutating func queue(
        _ slot: UInt32, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer, count: Int,
        raw: Bool = false
    ) -> Bool {
        let i = Int(slot)
        guard connections.slots[i].fd >= 0 else { return false }
        let total = prefixLength + count
        let padding = raw ? 0 : (4 - (total & 3)) & 3
        guard let tls = connections.slots[i].tls else {
            guard total + padding <= connections.slots[i].outboxFree else {
                if !raw { counters.add(.streamDropsFull) }
                return false
            }
            noteOutboxFilling(slot)
            if let p = prefix { connections.slots[i].append(p, count: prefixLength) }
            connections.slots[i].append(bytes, count: count)
            connections.slots[i].appendZeros(padding)
            connections.markDirty(slot)
            counters.add(.bytesToStreams, total + padding)
            return true
        }
        guard tls.isHandshakeComplete, total + padding <= plainScratch.count else { return false }
        // Room for the records' framing too: at most 16 KiB of plaintext
        // per record, each costing well under 64 bytes of header and tag.
        let records = (total + padding) / 16_384 + 1
        guard total + padding + records * 64 <= connections.slots[i].outboxFree else {
            if !raw { counters.add(.streamDropsFull) }
            return false
        }
        let plain = plainScratch.baseAddress!
        if let p = prefix { plain.copyMemory(from: p, byteCount: prefixLength) }
        (plain + prefixLength).copyMemory(from: bytes, byteCount: count)
        (plain + total).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
        var written = 0
        var rounds = 0
        while written < total + padding {
            rounds += 1
            let n: Int
            do throws(TLSError) {
                n = try connections.slots[i].tls!.writePlaintext(
                    UnsafeRawBufferPointer(start: plain + written, count: total + padding - written))
            } catch {
                counters.add(.tlsFailures)
                close(slot, why: "TLS: \(error); closing")
                return false
            }
            written += n
            guard drainCiphertext(slot) else { return false }
            if n == 0 && rounds > 4 {
                close(slot, why: "TLS: the session takes no more plaintext; closing")
                return false
            }
        }
        counters.add(.bytesToStreams, total + padding)
        return true
    }

    /// The stall timer counts from when the outbox stops being empty.
    @inline(__always)
    mutating func noteOutboxFilling(_ slot: UInt32) {
        if connections.slots[Int(slot)].outboxCount == 0 && connections.slots[Int(slot)].sending == 0 {
            connections.slots[Int(slot)].lastSendProgress = nowSeconds
        }
    }

    // MARK: The flush

    /// Starts the end-of-batch flush; the worker then calls `flush(_:)` for
    /// each `dirtySlot(k)`, k below the count returned.
    mutating func beginFlush() -> Int { connections.beginFlush() }

    func dirtySlot(_ k: Int) -> UInt32 { connections.dirty[k] }

    /// One connection with something to do: a receive to arm, held bytes to
    /// move to `partner` (data connections), a SEND of its queued bytes.
    mutating func flush(_ slot: UInt32, partner: UInt32?, _ reactor: inout Reactor) {
        connections.clearDirty(slot)
        let i = Int(slot)
        if connections.slots[i].role != .client {
            flushDataConnection(slot, partner: partner, &reactor)
        } else if connections.slots[i].needsReceive && !connections.slots[i].receiving && !connections.slots[i].handingOff
            && !connections.slots[i].paused
        {
            armReceive(slot, &reactor)
        }
        let c = connections.slots[i]
        guard c.fd >= 0, c.sending == 0, let (bytes, count) = c.sendableRun else { return }
        let ud = UserData(kind: .streamSend, slot: slot, generation: c.generation)
        reactor.submit(.streamSend(socket: c.fd, bytes: bytes, count: count, userData: ud))
        connections.slots[i].sending = count
    }

    /// A data connection at the flush: move held bytes to the partner,
    /// close a side whose partner ended once its outbox is sent, and read on
    /// when the partner has room for another buffer.
    private mutating func flushDataConnection(_ slot: UInt32, partner: UInt32?, _ reactor: inout Reactor) {
        let i = Int(slot)
        guard connections.slots[i].fd >= 0 else { return }
        if connections.slots[i].inboxCount > 0, let p = partner, let inbox = connections.slots[i].inbox,
            queue(p, prefix: nil, prefixLength: 0, bytes: inbox, count: connections.slots[i].inboxCount, raw: true)
        {
            connections.slots[i].inboxCount = 0
        }
        if connections.slots[i].closeWhenDrained && connections.slots[i].outboxCount == 0
            && connections.slots[i].sending == 0
        {
            close(slot, why: nil, quietly: "partner ended, queue sent")
            return
        }
        guard connections.slots[i].needsReceive, !connections.slots[i].receiving, !connections.slots[i].paused,
            connections.slots[i].inboxCount == 0,
            let p = partner, connections.slots[Int(p)].outboxFree >= reactor.buffers.size(0) + 256
        else { return }
        armReceive(slot, &reactor)
    }

    /// A SEND finished on `slot`.
    mutating func sendCompleted(_ cqe: Completion, partner: UInt32?, now: MonotonicTime) {
        let slot = cqe.userData.slot
        let i = Int(slot)
        guard i < connections.capacity, connections.slots[i].generation == cqe.userData.generation else { return }
        connections.slots[i].sending = 0
        guard connections.slots[i].fd >= 0 else {
            connections.releaseIfDone(slot)
            return
        }
        guard cqe.result > 0 else {
            let ordinary = cqe.result == 0 || cqe.result == -EPIPE || cqe.result == -ECONNRESET
            close(
                slot, why: ordinary ? nil : "send failed: \(Errno(rawValue: -cqe.result))",
                quietly: "send: the other end closed")
            return
        }
        connections.slots[i].consumeSent(Int(cqe.result))
        connections.slots[i].lastSendProgress = now.seconds
        if connections.slots[i].handingOff {
            events.append(.readyToHandOff(slot))
            return
        }
        if connections.slots[i].outboxCount > 0 { connections.markDirty(slot) }
        if connections.slots[i].role != .client {
            // Room again: the partner may move what it holds and read on.
            if let p = partner { connections.markDirty(p) }
            if connections.slots[i].outboxCount == 0 && connections.slots[i].closeWhenDrained {
                close(slot, why: nil, quietly: "partner ended, queue sent")
            }
        }
    }
}
