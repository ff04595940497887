import Glibc
import STUN
import TURN
import URing

// TURN over TCP and TLS (RFC 8656 §3.1), the receiving half: accepting
// connections, cutting the byte stream into STUN messages and ChannelData
// frames (decrypting TLS first). The sending half, closing and the timers
// are in Worker+StreamSend.swift. Past the framing, a frame is routed like
// a datagram (Worker+Routing.swift): to UDP relays, or for RFC 6062 TCP
// allocations to peer connections (Worker+TCPRelay.swift).
extension Worker {
    // MARK: Accepting

    mutating func armStreamListener(_ i: Int) {
        reactor.submit(
            .acceptMultishot(socket: stream.listeners[i].fd, userData: UserData(kind: .streamAccept, slot: UInt32(i))))
    }

    mutating func acceptCompleted(_ cqe: Completion, listener i: Int, now: MonotonicTime) {
        if cqe.result >= 0 {
            accepted(fd: cqe.result, listener: i, now: now)
        } else if cqe.result != -ECANCELED {
            noteStreamRefusal("accept on \(stream.listeners[i].local) failed: \(Errno(rawValue: -cqe.result))", now: now)
        }
        if !cqe.hasMore && !stopping {
            if cqe.result == -EMFILE || cqe.result == -ENFILE || cqe.result == -ENOMEM {
                stream.listeners[i].acceptAtTick = true
            } else {
                stream.listeners[i].needsAccept = true
                stream.needsRearm = true
            }
        }
    }

    mutating func accepted(fd: Int32, listener i: Int, now: MonotonicTime) {
        let socket = StreamSocket(rawValue: fd)
        let listener = stream.listeners[i]
        guard let peerAddress = try? socket.peerAddress() else {
            socket.close()
            return
        }
        let peer = TransportAddress(peerAddress)
        var refusal: String? = nil
        if stream.connections.openCount >= stream.connections.capacity {
            refusal = "connection from \(peer) refused: \(stream.connections.capacity) connections open on worker \(index) (--tcp-connections)"
        } else if stream.limits.perSource > 0 && stream.connections.count(from: peer.ip) >= stream.limits.perSource {
            refusal = "connection from \(peer) refused: \(stream.limits.perSource) connections from \(peer.ip) already open on worker \(index) (--tcp-connections-per-ip)"
        }
        var tls: TLSStream? = nil
        if refusal == nil && listener.tls {
            if let context = stream.tlsContext {
                do { tls = try TLSStream(server: context) } catch { refusal = "TLS session for \(peer): \(error)" }
            } else {
                refusal = "TLS connection from \(peer) refused: no certificate loaded"
            }
        }
        if let why = refusal {
            counters.add(.streamRefused)
            noteStreamRefusal(why, now: now)
            socket.close()
            return
        }
        try? socket.setNoDelay()
        let fiveTuple = FiveTuple(client: peer, server: listener.local, transport: listener.tls ? .tls : .tcp)
        guard let slot = stream.connections.open(fd: fd, fiveTuple: fiveTuple, tls: tls, now: now.seconds) else {
            socket.close()
            return
        }
        counters.add(.streamAccepted)
        stream.connections.slots[Int(slot)].needsReceive = true
        armStreamReceive(slot)
    }

    /// Refusals and accept errors: logged at most once a second per worker.
    mutating func noteStreamRefusal(_ why: String, now: MonotonicTime) {
        if now.nanoseconds &- stream.lastRefusalLog < 1_000_000_000 { return }
        stream.lastRefusalLog = now.nanoseconds
        log(.warning, why)
    }

    // MARK: Receiving

    mutating func armStreamReceive(_ slot: UInt32) {
        let c = stream.connections.slots[Int(slot)]
        guard c.fd >= 0, !c.receiving else { return }
        guard reactor.buffers.hasFree(large: false) else {
            // Every small buffer is held by sends in flight; their
            // completions wake the loop, and the flush arms this then.
            stream.connections.markDirty(slot)
            return
        }
        let ud = UserData(kind: .streamReceive, slot: slot, generation: c.generation)
        // Data connections (RFC 6062) receive one buffer at a time, so
        // reading can stop while the partner cannot take more.
        let many = reactor.multishot && c.role == .client
        reactor.submit(.streamReceive(socket: c.fd, multishot: many, userData: ud))
        stream.connections.slots[Int(slot)].receiving = true
        stream.connections.slots[Int(slot)].needsReceive = false
    }

    mutating func streamReceiveCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        let slot = ud.slot
        let open = stream.connections.isOpen(slot, generation: ud.generation)
        if let id = cqe.bufferID {
            let h = ReceiveBuffers.handle(id: id, large: false)
            reactor.buffers.took(h)
            if open && cqe.result > 0 {
                streamReceived(slot, bytes: reactor.buffers.base(h), count: Int(cqe.result), buffer: h, now: now)
            }
            reactor.buffers.release(h)
        }
        guard !cqe.hasMore else { return }  // single-shot receives never have F_MORE
        guard Int(slot) < stream.connections.capacity, stream.connections.slots[Int(slot)].generation == ud.generation else { return }
        stream.connections.slots[Int(slot)].receiving = false
        if stream.connections.slots[Int(slot)].fd < 0 {
            stream.connections.releaseIfDone(slot)
        } else if cqe.result == 0 {
            closeStream(slot, why: nil, quietly: "end of stream")
        } else if cqe.result < 0 && cqe.result != -ENOBUFS && cqe.result != -ECANCELED {
            closeStream(slot, why: "receive failed: \(Errno(rawValue: -cqe.result))")
        } else {
            if cqe.result == -ENOBUFS { counters.add(.enobufs) }
            stream.connections.slots[Int(slot)].needsReceive = true
            stream.connections.markDirty(slot)
        }
    }

    /// Bytes from a connection: plaintext frames (TCP) are handled in
    /// place when whole; TLS records are decrypted into the inbox.
    mutating func streamReceived(
        _ slot: UInt32, bytes: UnsafeMutableRawPointer, count: Int, buffer h: UInt16, now: MonotonicTime
    ) {
        stream.connections.slots[Int(slot)].lastReceive = now.seconds
        counters.add(.bytesFromStreams, count)
        if stream.connections.slots[Int(slot)].role != .client && !stream.connections.slots[Int(slot)].isTLS {
            rawReceived(slot, UnsafeRawBufferPointer(start: bytes, count: count))
            return
        }
        if stream.connections.slots[Int(slot)].isTLS {
            tlsReceived(slot, bytes: UnsafeRawBufferPointer(start: bytes, count: count), now: now)
            return
        }
        if stream.connections.slots[Int(slot)].inboxCount > 0 {
            // A frame is already split: gather behind it.
            guard appendToInbox(slot, UnsafeRawBufferPointer(start: bytes, count: count)) else { return }
            processInbox(slot, now: now)
            return
        }
        var offset = 0
        while offset < count && stream.connections.slots[Int(slot)].fd >= 0 && !stream.connections.slots[Int(slot)].handingOff {
            let rest = UnsafeRawBufferPointer(start: bytes + offset, count: count - offset)
            let next: StreamFraming.Next
            do throws(STUNError) { next = try StreamFraming.next(rest) } catch {
                closeStream(slot, why: "not STUN or ChannelData (\(error)); closing")
                return
            }
            switch next {
            case .frame(let length, let consumed):
                streamFrame(
                    slot, UnsafeMutableRawBufferPointer(start: bytes + offset, count: length), buffer: h, now: now)
                offset += consumed
                if stream.connections.slots[Int(slot)].role != .client && stream.connections.slots[Int(slot)].fd >= 0 {
                    // ConnectionBind made this a data connection: the rest is raw.
                    if offset < count { rawReceived(slot, UnsafeRawBufferPointer(start: bytes + offset, count: count - offset)) }
                    return
                }
            case .needMore:
                _ = appendToInbox(slot, rest)
                return
            }
        }
    }

    /// Copies `bytes` behind what the inbox holds, growing it if a frame
    /// needs it. Closes the connection (and returns false) when it cannot.
    mutating func appendToInbox(_ slot: UInt32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let i = Int(slot)
        let needed = stream.connections.slots[i].inboxCount + bytes.count
        if needed > stream.connections.slots[i].inboxCapacity && !stream.connections.growInbox(slot, to: needed) {
            closeStream(slot, why: "more than \(StreamConnections.inboxMaximum) bytes without a whole frame; closing")
            return false
        }
        if let base = bytes.baseAddress, let inbox = stream.connections.slots[i].inbox {
            (inbox + stream.connections.slots[i].inboxCount).copyMemory(from: base, byteCount: bytes.count)
        }
        stream.connections.slots[i].inboxCount = needed
        return true
    }

    /// Handles every whole frame in the inbox and moves what is left to its start.
    mutating func processInbox(_ slot: UInt32, now: MonotonicTime) {
        let i = Int(slot)
        guard let inbox = stream.connections.slots[i].inbox else { return }
        if stream.connections.slots[i].role != .client {
            // Raw bytes of a data connection (decrypted, over TLS): the flush relays them.
            stream.connections.markDirty(slot)
            return
        }
        var offset = 0
        while stream.connections.slots[i].fd >= 0 && stream.connections.slots[i].role == .client && !stream.connections.slots[i].handingOff {
            let rest = UnsafeRawBufferPointer(start: inbox + offset, count: stream.connections.slots[i].inboxCount - offset)
            let next: StreamFraming.Next
            do throws(STUNError) { next = try StreamFraming.next(rest) } catch {
                closeStream(slot, why: "not STUN or ChannelData (\(error)); closing")
                return
            }
            guard case .frame(let length, let consumed) = next else {
                if case .needMore(let total) = next, total > stream.connections.slots[i].inboxCapacity,
                    !stream.connections.growInbox(slot, to: total)
                {
                    closeStream(slot, why: "frame of \(total) bytes is too large; closing")
                    return
                }
                break
            }
            // A frame from the inbox is handled before the inbox changes:
            // its bytes are copied wherever they go (no buffer handle).
            streamFrame(slot, UnsafeMutableRawBufferPointer(start: inbox + offset, count: length), buffer: nil, now: now)
            offset += consumed
        }
        guard stream.connections.slots[i].fd >= 0, offset > 0, let current = stream.connections.slots[i].inbox else { return }
        let left = stream.connections.slots[i].inboxCount - offset
        if left > 0 { current.copyMemory(from: current + offset, byteCount: left) }
        stream.connections.slots[i].inboxCount = left
        // Left over after a ConnectionBind: raw bytes for the peer.
        if left > 0 && stream.connections.slots[i].role != .client { stream.connections.markDirty(slot) }
    }

    /// One whole frame from a connection: the datagram path's dispatch.
    @inline(__always)
    mutating func streamFrame(
        _ slot: UInt32, _ frame: UnsafeMutableRawBufferPointer, buffer h: UInt16?, now: MonotonicTime
    ) {
        // A ConnectionBind for another worker's CONNECTION-ID moves there.
        if frame.count >= 20 && frame[0] == 0x00 && frame[1] == 0x0B && handOffIfForeign(slot, UnsafeRawBufferPointer(frame)) {
            return
        }
        let fiveTuple = stream.connections.slots[Int(slot)].fiveTuple
        fromClient(datagram: frame, fiveTuple: fiveTuple, reply: .stream(slot), buffer: h, now: now)
    }

    /// The allocation just made over connection `slot`: peer data for it
    /// goes back over that connection.
    mutating func streamAllocated(_ slot: UInt32, _ allocation: AllocationID) {
        stream.noteAllocation(allocation, madeOver: slot)
    }

    // MARK: TLS

    mutating func tlsReceived(_ slot: UInt32, bytes: UnsafeRawBufferPointer, now: MonotonicTime) {
        let i = Int(slot)
        var offset = 0
        var rounds = 0
        while stream.connections.slots[i].fd >= 0 {
            rounds += 1
            var fed = 0
            if offset < bytes.count {
                fed = stream.connections.slots[i].tls!.feedCiphertext(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                offset += fed
            }
            var produced = 0
            // Decrypt into the inbox, handling frames as they complete.
            reading: while stream.connections.slots[i].fd >= 0 {
                if stream.connections.slots[i].inboxCount == stream.connections.slots[i].inboxCapacity {
                    processInbox(slot, now: now)
                    if stream.connections.slots[i].fd < 0 { return }
                    if stream.connections.slots[i].inboxCount == stream.connections.slots[i].inboxCapacity
                        && !stream.connections.growInbox(slot, to: stream.connections.slots[i].inboxCapacity + 1)
                    {
                        closeStream(slot, why: "TLS: frame too large; closing")
                        return
                    }
                }
                let c = stream.connections.slots[i]
                let room = UnsafeMutableRawBufferPointer(
                    start: c.inbox! + c.inboxCount, count: c.inboxCapacity - c.inboxCount)
                switch stream.connections.slots[i].tls!.readPlaintext(into: room) {
                case .bytes(let n):
                    produced += n
                    stream.connections.slots[i].inboxCount += n
                case .wantMore:
                    break reading
                case .wantWrite:
                    // OpenSSL's output is full: move it to the outbox, go on.
                    guard drainCiphertext(slot) else { return }
                case .closed:
                    closeStream(slot, why: nil, quietly: "TLS close_notify")
                    return
                case .failed(let error):
                    counters.add(.tlsFailures)
                    closeStream(slot, why: "TLS: \(error); closing")
                    return
                }
            }
            // Handshake records, alerts, or tickets to send.
            guard drainCiphertext(slot) else { return }
            if produced > 0 { processInbox(slot, now: now) }
            if offset >= bytes.count { break }
            if fed == 0 && produced == 0 || rounds > 64 {
                closeStream(slot, why: "TLS: stalled with ciphertext left over; closing")
                return
            }
        }
    }

    /// Moves the TLS session's pending ciphertext into the outbox; closes the
    /// connection (false) when the outbox cannot take it.
    mutating func drainCiphertext(_ slot: UInt32) -> Bool {
        let i = Int(slot)
        while stream.connections.slots[i].fd >= 0, stream.connections.slots[i].tls!.pendingCiphertext > 0 {
            let n = stream.connections.slots[i].tls!.takeCiphertext(into: stream.cipherScratch)
            if n == 0 { break }
            guard n <= stream.connections.slots[i].outboxFree else {
                closeStream(slot, why: "TLS: send queue full; closing")
                return false
            }
            noteOutboxFilling(slot)
            stream.connections.slots[i].append(stream.cipherScratch.baseAddress!, count: n)
            stream.connections.markDirty(slot)
        }
        return stream.connections.slots[i].fd >= 0
    }
}
