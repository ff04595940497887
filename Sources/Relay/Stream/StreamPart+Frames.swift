import Glibc
import STUN
import TURN
import URing

/// One whole STUN message or ChannelData frame read from a connection.
/// `buffer` is the receive buffer it lies in (the worker may queue a send
/// that points into it), or nil when it lies in the connection's inbox (it
/// must then be copied wherever it goes before the next `nextFrame`).
struct StreamFrame {
    var bytes: UnsafeMutableRawBufferPointer
    var buffer: UInt16?
}

// Receiving on a connection and cutting the byte stream into frames.
//
// The worker drives it: `beginReceive` with the bytes of a receive, then
// `nextFrame` until nil (routing each frame through TURN before asking for
// the next, since a frame can change what the rest of the bytes are: a
// ConnectionBind turns them into raw bytes for a peer), then `endReceive`.
// Whole frames found in the receive buffer are returned in place; a frame
// split across receives is gathered in the connection's inbox. Over TLS the
// ciphertext is decrypted into the inbox and every frame comes from there.
// RFC 6062 data connections carry raw bytes, relayed to the other side of
// their pair without the worker (`beginReceive` returns false).
extension StreamPart {
    /// Arms a receive on `slot` unless one is armed. Client connections
    /// receive multishot; data connections one buffer at a time, so reading
    /// can stop while the other side cannot take more.
    mutating func armReceive(_ slot: UInt32, _ reactor: inout Reactor) {
        let c = connections.slots[Int(slot)]
        // Paused by the traffic limits: `resume` arms it.
        guard c.fd >= 0, !c.receiving, !c.paused else { return }
        guard reactor.buffers.hasFree(large: false) else {
            // Every small buffer is held by sends in flight; their
            // completions wake the loop, and the flush arms this then.
            connections.markDirty(slot)
            return
        }
        let ud = UserData(kind: .streamReceive, slot: slot, generation: c.generation)
        reactor.submit(.streamReceive(socket: c.fd, multishot: reactor.multishot && c.role == .client && !singleShotClients, userData: ud))
        connections.slots[Int(slot)].receiving = true
        connections.slots[Int(slot)].needsReceive = false
    }

    /// A receive's completion, after its bytes were handled: whether the
    /// receive goes on, ended (armed again at the flush) or the connection ended.
    mutating func receiveCompleted(_ cqe: Completion) {
        guard !cqe.hasMore else { return }  // single-shot receives never have F_MORE
        let slot = cqe.userData.slot
        let i = Int(slot)
        guard i < connections.capacity, connections.slots[i].generation == cqe.userData.generation else { return }
        connections.slots[i].receiving = false
        if connections.slots[i].fd < 0 {
            connections.releaseIfDone(slot)
        } else if cqe.result == 0 {
            close(slot, why: nil, quietly: "end of stream")
        } else if cqe.result < 0 && cqe.result != -ENOBUFS && cqe.result != -ECANCELED {
            close(slot, why: "receive failed: \(Errno(rawValue: -cqe.result))")
        } else {
            if cqe.result == -ENOBUFS { counters.add(.enobufs) }
            connections.slots[i].needsReceive = true
            connections.markDirty(slot)
        }
    }

    /// `count` bytes received on `slot` in receive buffer `h`. Returns true
    /// when they may hold frames for the worker (`nextFrame`); a data
    /// connection's bytes go to `partner` (the other side of its pair) or
    /// wait in its inbox.
    mutating func beginReceive(
        _ slot: UInt32, generation: UInt32, bytes: UnsafeMutableRawPointer, count: Int, buffer h: UInt16,
        partner: UInt32?, now: MonotonicTime
    ) -> Bool {
        guard connections.isOpen(slot, generation: generation) else { return false }
        let i = Int(slot)
        connections.slots[i].lastReceive = now.seconds
        counters.add(.bytesFromStreams, count)
        connections.slots[i].pending = bytes
        connections.slots[i].pendingCount = count
        connections.slots[i].pendingBuffer = h
        if connections.slots[i].role != .client {
            relayPending(slot, partner: partner)
            return false
        }
        return !connections.slots[i].handingOff
    }

    /// The next whole frame of `slot`, or nil when the bytes run out (or
    /// the connection closed, became a data connection, or is moving to
    /// another worker). The frame is valid until the next call.
    mutating func nextFrame(_ slot: UInt32) -> StreamFrame? {
        let i = Int(slot)
        var rounds = 0
        while true {
            guard connections.slots[i].fd >= 0, connections.slots[i].role == .client, !connections.slots[i].handingOff
            else { return nil }
            rounds += 1
            if rounds > 256 {
                close(slot, why: "TLS: stalled without progress; closing")
                return nil
            }
            // Frames held in the inbox come first.
            let c = connections.slots[i]
            if c.inboxCount > c.inboxRead, let inbox = c.inbox {
                let start = inbox + c.inboxRead
                let next: StreamFraming.Next
                do throws(STUNError) {
                    next = try StreamFraming.next(UnsafeRawBufferPointer(start: start, count: c.inboxCount - c.inboxRead))
                } catch {
                    close(slot, why: "not STUN or ChannelData (\(error)); closing")
                    return nil
                }
                switch next {
                case .frame(let length, let consumed):
                    connections.slots[i].inboxRead += consumed
                    if connections.slots[i].inboxRead == connections.slots[i].inboxCount {
                        connections.slots[i].inboxRead = 0
                        connections.slots[i].inboxCount = 0
                    }
                    return StreamFrame(bytes: UnsafeMutableRawBufferPointer(start: start, count: length), buffer: nil)
                case .needMore(let total):
                    compactInbox(slot)
                    if total > connections.slots[i].inboxCapacity && !connections.growInbox(slot, to: total) {
                        close(slot, why: "frame of \(total) bytes is too large; closing")
                        return nil
                    }
                }
            }
            // Then more input: decrypted, or the rest of the receive.
            if c.isTLS {
                guard tlsStep(slot) else { return nil }
                continue
            }
            guard c.pendingCount > 0, let bytes = c.pending else { return nil }
            if c.inboxCount > 0 {
                guard appendToInbox(slot, UnsafeRawBufferPointer(start: bytes, count: c.pendingCount)) else { return nil }
                connections.slots[i].pendingCount = 0
                continue
            }
            // Nothing held: a whole frame is handled where it lies.
            let next: StreamFraming.Next
            do throws(STUNError) {
                next = try StreamFraming.next(UnsafeRawBufferPointer(start: bytes, count: c.pendingCount))
            } catch {
                close(slot, why: "not STUN or ChannelData (\(error)); closing")
                return nil
            }
            switch next {
            case .frame(let length, let consumed):
                connections.slots[i].pending = bytes + consumed
                connections.slots[i].pendingCount -= consumed
                return StreamFrame(bytes: UnsafeMutableRawBufferPointer(start: bytes, count: length), buffer: c.pendingBuffer)
            case .needMore:
                _ = appendToInbox(slot, UnsafeRawBufferPointer(start: bytes, count: c.pendingCount))
                connections.slots[i].pendingCount = 0
                return nil
            }
        }
    }

    /// After the last frame of a receive: bytes left after a ConnectionBind
    /// are raw bytes for the peer; TLS ciphertext nobody would take means
    /// the session is stuck.
    mutating func endReceive(_ slot: UInt32, partner: UInt32?) {
        let i = Int(slot)
        defer {
            connections.slots[i].pending = nil
            connections.slots[i].pendingCount = 0
        }
        guard connections.slots[i].fd >= 0 else { return }
        if connections.slots[i].role != .client {
            relayPending(slot, partner: partner)
        } else if connections.slots[i].pendingCount > 0 && connections.slots[i].isTLS && !connections.slots[i].handingOff {
            close(slot, why: "TLS: stalled with ciphertext left over; closing")
        }
    }

    // MARK: Data connections

    /// A data connection's received bytes: straight into the partner's
    /// outbox when it has room and nothing is held, else held in the inbox
    /// (and no receive is armed until it is empty again). Over TLS they are
    /// decrypted into the inbox first and relayed at the flush.
    private mutating func relayPending(_ slot: UInt32, partner: UInt32?) {
        let i = Int(slot)
        compactInbox(slot)
        if connections.slots[i].isTLS {
            while connections.slots[i].fd >= 0, tlsStep(slot) {}
            if connections.slots[i].fd >= 0 && connections.slots[i].pendingCount > 0 {
                close(slot, why: "TLS: stalled with ciphertext left over; closing")
            }
        } else if connections.slots[i].pendingCount > 0, let bytes = connections.slots[i].pending {
            let count = connections.slots[i].pendingCount
            connections.slots[i].pendingCount = 0
            let relayed =
                connections.slots[i].inboxCount == 0
                && partner.map { queue($0, prefix: nil, prefixLength: 0, bytes: bytes, count: count, raw: true) } == true
            if !relayed {
                guard appendToInbox(slot, UnsafeRawBufferPointer(start: bytes, count: count)) else { return }
            }
        }
        guard connections.slots[i].fd >= 0 else { return }
        connections.slots[i].needsReceive = true
        connections.markDirty(slot)
    }

    // MARK: The inbox

    /// Copies `bytes` behind what the inbox holds, growing it if a frame
    /// needs it. Closes the connection (and returns false) when it cannot.
    mutating func appendToInbox(_ slot: UInt32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let i = Int(slot)
        let needed = connections.slots[i].inboxCount + bytes.count
        if needed > connections.slots[i].inboxCapacity && !connections.growInbox(slot, to: needed) {
            close(slot, why: "more than \(StreamConnections.inboxMaximum) bytes without a whole frame; closing")
            return false
        }
        if let base = bytes.baseAddress, let inbox = connections.slots[i].inbox {
            (inbox + connections.slots[i].inboxCount).copyMemory(from: base, byteCount: bytes.count)
        }
        connections.slots[i].inboxCount = needed
        return true
    }

    /// Moves the unread bytes of the inbox to its start.
    private mutating func compactInbox(_ slot: UInt32) {
        let i = Int(slot)
        let read = connections.slots[i].inboxRead
        guard read > 0, let inbox = connections.slots[i].inbox else { return }
        let left = connections.slots[i].inboxCount - read
        if left > 0 { inbox.copyMemory(from: inbox + read, byteCount: left) }
        connections.slots[i].inboxCount = left
        connections.slots[i].inboxRead = 0
    }

    // MARK: TLS

    /// One step of a TLS session: feed it ciphertext from the receive,
    /// decrypt what it can into the inbox, move what it wants to send
    /// (handshake records, alerts, tickets) into the outbox. Returns true if
    /// anything moved; false when it needs more bytes or the connection closed.
    private mutating func tlsStep(_ slot: UInt32) -> Bool {
        let i = Int(slot)
        var progressed = false
        if connections.slots[i].pendingCount > 0, let bytes = connections.slots[i].pending {
            let fed = connections.slots[i].tls!.feedCiphertext(
                UnsafeRawBufferPointer(start: bytes, count: connections.slots[i].pendingCount))
            connections.slots[i].pending = bytes + fed
            connections.slots[i].pendingCount -= fed
            progressed = fed > 0
        }
        if connections.slots[i].inboxCount == connections.slots[i].inboxCapacity {
            compactInbox(slot)
            if connections.slots[i].inboxCount == connections.slots[i].inboxCapacity
                && !connections.growInbox(slot, to: connections.slots[i].inboxCapacity + 1)
            {
                close(slot, why: "TLS: frame too large; closing")
                return false
            }
        }
        let c = connections.slots[i]
        let room = UnsafeMutableRawBufferPointer(start: c.inbox! + c.inboxCount, count: c.inboxCapacity - c.inboxCount)
        switch connections.slots[i].tls!.readPlaintext(into: room) {
        case .bytes(let n):
            connections.slots[i].inboxCount += n
            progressed = true
        case .wantMore:
            break
        case .wantWrite:
            // OpenSSL's output is full: move it to the outbox, go on.
            guard drainCiphertext(slot) else { return false }
            progressed = true
        case .closed:
            close(slot, why: nil, quietly: "TLS close_notify")
            return false
        case .failed(let error):
            counters.add(.tlsFailures)
            close(slot, why: "TLS: \(error); closing")
            return false
        }
        guard drainCiphertext(slot) else { return false }
        return progressed
    }

    /// Moves the TLS session's pending ciphertext into the outbox; closes the
    /// connection (false) when the outbox cannot take it.
    mutating func drainCiphertext(_ slot: UInt32) -> Bool {
        let i = Int(slot)
        while connections.slots[i].fd >= 0, connections.slots[i].tls!.pendingCiphertext > 0 {
            let n = connections.slots[i].tls!.takeCiphertext(into: cipherScratch)
            if n == 0 { break }
            guard n <= connections.slots[i].outboxFree else {
                close(slot, why: "TLS: send queue full; closing")
                return false
            }
            noteOutboxFilling(slot)
            connections.slots[i].append(cipherScratch.baseAddress!, count: n)
            connections.markDirty(slot)
        }
        return connections.slots[i].fd >= 0
    }
}
