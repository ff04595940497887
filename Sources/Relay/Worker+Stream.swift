import Glibc
import STUN
import TURN
import URing

/// Where the answer to a client's request goes: the UDP listener socket it
/// came in on, or the stream connection (TCP/TLS) it came over.
enum ClientReply {
    case datagram(Int32)
    case stream(UInt32)
}

/// A TCP or TLS listener of one worker (SO_REUSEPORT: every worker has one
/// per address, and the kernel spreads connections between them).
struct StreamListener {
    var fd: Int32
    var local: TransportAddress
    var tls: Bool
    /// Its multishot ACCEPT ended and must be armed again: at the end of the
    /// batch, or at the next tick when the kernel was out of descriptors or
    /// memory (`acceptAtTick`), so a failing accept is not retried in a loop.
    var needsAccept = false
    var acceptAtTick = false
}

// TURN over TCP and TLS (RFC 8656 §3.1): accepting connections, cutting the
// byte stream into STUN messages and ChannelData frames, queueing what goes
// back, and the connection timers. Relaying to peers stays UDP (the
// allocation's relay sockets), so everything past the framing is the
// datagram path's code.
extension Worker {
    // MARK: Accepting

    mutating func armStreamListener(_ i: Int) {
        if !ring.prepareAcceptMultishot(socket: streamListeners[i].fd, userData: UserData(kind: .streamAccept, slot: UInt32(i))) {
            streamListeners[i].needsAccept = true
            pendingRearm = true
        }
    }

    mutating func acceptCompleted(_ cqe: Completion, listener i: Int, now: MonotonicTime) {
        if cqe.result >= 0 {
            accepted(fd: cqe.result, listener: i, now: now)
        } else if cqe.result != -ECANCELED {
            noteStreamRefusal("accept on \(streamListeners[i].local) failed: \(Errno(rawValue: -cqe.result))", now: now)
        }
        if !cqe.hasMore && !stopping {
            if cqe.result == -EMFILE || cqe.result == -ENFILE || cqe.result == -ENOMEM {
                streamListeners[i].acceptAtTick = true
            } else {
                streamListeners[i].needsAccept = true
                pendingRearm = true
            }
        }
    }

    mutating func accepted(fd: Int32, listener i: Int, now: MonotonicTime) {
        let socket = StreamSocket(rawValue: fd)
        let listener = streamListeners[i]
        guard let peerAddress = try? socket.peerAddress() else {
            socket.close()
            return
        }
        let peer = TransportAddress(peerAddress)
        var refusal: String? = nil
        if streams.openCount >= streams.capacity {
            refusal = "connection from \(peer) refused: \(streams.capacity) connections open on worker \(index) (--tcp-connections)"
        } else if streamLimits.perSource > 0 && streams.count(from: peer.ip) >= streamLimits.perSource {
            refusal = "connection from \(peer) refused: \(streamLimits.perSource) connections from \(peer.ip) already open on worker \(index) (--tcp-connections-per-ip)"
        }
        var tls: TLSStream? = nil
        if refusal == nil && listener.tls {
            if let context = tlsContext {
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
        guard let slot = streams.open(fd: fd, fiveTuple: fiveTuple, tls: tls, now: now.seconds) else {
            socket.close()
            return
        }
        counters.add(.streamAccepted)
        streams.slots[Int(slot)].needsReceive = true
        armStreamReceive(slot)
    }

    /// Refusals and accept errors: logged at most once a second per worker.
    mutating func noteStreamRefusal(_ why: String, now: MonotonicTime) {
        if now.nanoseconds &- lastStreamRefusalLog < 1_000_000_000 { return }
        lastStreamRefusalLog = now.nanoseconds
        log(.warning, why)
    }

    // MARK: Receiving

    mutating func armStreamReceive(_ slot: UInt32) {
        let c = streams.slots[Int(slot)]
        guard c.fd >= 0, !c.receiving else { return }
        guard buffers.hasFree(large: false) else {
            // Every small buffer is held by sends in flight; their
            // completions wake the loop, and the flush arms this then.
            streams.markDirty(slot)
            return
        }
        let ud = UserData(kind: .streamReceive, slot: slot, generation: c.generation)
        // Data connections (RFC 6062) receive one buffer at a time, so
        // reading can stop while the partner cannot take more.
        let many = multishot && c.role == .client
        if ring.prepareStreamReceive(socket: c.fd, bufferGroup: ReceiveBuffers.smallGroup, multishot: many, userData: ud)
        {
            streams.slots[Int(slot)].receiving = true
            streams.slots[Int(slot)].needsReceive = false
        } else {
            streams.markDirty(slot)
        }
    }

    mutating func streamReceiveCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        let slot = ud.slot
        let open = streams.isOpen(slot, generation: ud.generation)
        if let id = cqe.bufferID {
            let h = ReceiveBuffers.handle(id: id, large: false)
            buffers.took(h)
            if open && cqe.result > 0 {
                streamReceived(slot, bytes: buffers.base(h), count: Int(cqe.result), buffer: h, now: now)
            }
            buffers.release(h)
        }
        guard !cqe.hasMore else { return }  // single-shot receives never have F_MORE
        guard Int(slot) < streams.capacity, streams.slots[Int(slot)].generation == ud.generation else { return }
        streams.slots[Int(slot)].receiving = false
        if streams.slots[Int(slot)].fd < 0 {
            streams.releaseIfDone(slot)
        } else if cqe.result == 0 {
            closeStream(slot, why: nil, quietly: "end of stream")
        } else if cqe.result < 0 && cqe.result != -ENOBUFS && cqe.result != -ECANCELED {
            closeStream(slot, why: "receive failed: \(Errno(rawValue: -cqe.result))")
        } else {
            if cqe.result == -ENOBUFS { counters.add(.enobufs) }
            streams.slots[Int(slot)].needsReceive = true
            streams.markDirty(slot)
        }
    }

    /// Bytes from a connection: plaintext frames (TCP) are handled in
    /// place when whole; TLS records are decrypted into the inbox.
    mutating func streamReceived(
        _ slot: UInt32, bytes: UnsafeMutableRawPointer, count: Int, buffer h: UInt16, now: MonotonicTime
    ) {
        streams.slots[Int(slot)].lastReceive = now.seconds
        counters.add(.bytesFromStreams, count)
        if streams.slots[Int(slot)].role != .client && !streams.slots[Int(slot)].isTLS {
            rawReceived(slot, UnsafeRawBufferPointer(start: bytes, count: count))
            return
        }
        if streams.slots[Int(slot)].isTLS {
            tlsReceived(slot, bytes: UnsafeRawBufferPointer(start: bytes, count: count), now: now)
            return
        }
        if streams.slots[Int(slot)].inboxCount > 0 {
            // A frame is already split: gather behind it.
            guard appendToInbox(slot, UnsafeRawBufferPointer(start: bytes, count: count)) else { return }
            processInbox(slot, now: now)
            return
        }
        var offset = 0
        while offset < count && streams.slots[Int(slot)].fd >= 0 && !streams.slots[Int(slot)].handingOff {
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
                if streams.slots[Int(slot)].role != .client && streams.slots[Int(slot)].fd >= 0 {
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
        let needed = streams.slots[i].inboxCount + bytes.count
        if needed > streams.slots[i].inboxCapacity && !streams.growInbox(slot, to: needed) {
            closeStream(slot, why: "more than \(StreamConnections.inboxMaximum) bytes without a whole frame; closing")
            return false
        }
        if let base = bytes.baseAddress, let inbox = streams.slots[i].inbox {
            (inbox + streams.slots[i].inboxCount).copyMemory(from: base, byteCount: bytes.count)
        }
        streams.slots[i].inboxCount = needed
        return true
    }

    /// Handles every whole frame in the inbox and moves what is left to its start.
    mutating func processInbox(_ slot: UInt32, now: MonotonicTime) {
        let i = Int(slot)
        guard let inbox = streams.slots[i].inbox else { return }
        if streams.slots[i].role != .client {
            // Raw bytes of a data connection (decrypted, over TLS): the flush relays them.
            streams.markDirty(slot)
            return
        }
        var offset = 0
        while streams.slots[i].fd >= 0 && streams.slots[i].role == .client && !streams.slots[i].handingOff {
            let rest = UnsafeRawBufferPointer(start: inbox + offset, count: streams.slots[i].inboxCount - offset)
            let next: StreamFraming.Next
            do throws(STUNError) { next = try StreamFraming.next(rest) } catch {
                closeStream(slot, why: "not STUN or ChannelData (\(error)); closing")
                return
            }
            guard case .frame(let length, let consumed) = next else {
                if case .needMore(let total) = next, total > streams.slots[i].inboxCapacity,
                    !streams.growInbox(slot, to: total)
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
        guard streams.slots[i].fd >= 0, offset > 0, let current = streams.slots[i].inbox else { return }
        let left = streams.slots[i].inboxCount - offset
        if left > 0 { current.copyMemory(from: current + offset, byteCount: left) }
        streams.slots[i].inboxCount = left
        // Left over after a ConnectionBind: raw bytes for the peer.
        if left > 0 && streams.slots[i].role != .client { streams.markDirty(slot) }
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
        let fiveTuple = streams.slots[Int(slot)].fiveTuple
        fromClient(datagram: frame, fiveTuple: fiveTuple, reply: .stream(slot), buffer: h, now: now)
    }

    /// The allocation just made over connection `slot`: peer data for it
    /// goes back over that connection.
    mutating func streamAllocated(_ slot: UInt32, _ allocation: AllocationID) {
        streams.slots[Int(slot)].allocation = allocation
        allocationStream[Int(allocation.slot)] = slot
    }

    // MARK: TLS

    mutating func tlsReceived(_ slot: UInt32, bytes: UnsafeRawBufferPointer, now: MonotonicTime) {
        let i = Int(slot)
        var offset = 0
        var rounds = 0
        while streams.slots[i].fd >= 0 {
            rounds += 1
            var fed = 0
            if offset < bytes.count {
                fed = streams.slots[i].tls!.feedCiphertext(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                offset += fed
            }
            var produced = 0
            // Decrypt into the inbox, handling frames as they complete.
            reading: while streams.slots[i].fd >= 0 {
                if streams.slots[i].inboxCount == streams.slots[i].inboxCapacity {
                    processInbox(slot, now: now)
                    if streams.slots[i].fd < 0 { return }
                    if streams.slots[i].inboxCount == streams.slots[i].inboxCapacity
                        && !streams.growInbox(slot, to: streams.slots[i].inboxCapacity + 1)
                    {
                        closeStream(slot, why: "TLS: frame too large; closing")
                        return
                    }
                }
                let c = streams.slots[i]
                let room = UnsafeMutableRawBufferPointer(
                    start: c.inbox! + c.inboxCount, count: c.inboxCapacity - c.inboxCount)
                switch streams.slots[i].tls!.readPlaintext(into: room) {
                case .bytes(let n):
                    produced += n
                    streams.slots[i].inboxCount += n
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
        while streams.slots[i].fd >= 0, streams.slots[i].tls!.pendingCiphertext > 0 {
            let n = streams.slots[i].tls!.takeCiphertext(into: cipherScratch)
            if n == 0 { break }
            guard n <= streams.slots[i].outboxFree else {
                closeStream(slot, why: "TLS: send queue full; closing")
                return false
            }
            noteOutboxFilling(slot)
            streams.slots[i].append(cipherScratch.baseAddress!, count: n)
            streams.markDirty(slot)
        }
        return streams.slots[i].fd >= 0
    }

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
        guard streams.slots[i].fd >= 0 else { return false }
        let total = prefixLength + count
        // Raw bytes of a data connection (RFC 6062) are not padded, and a
        // full outbox is not a drop: the caller keeps them.
        let padding = raw ? 0 : (4 - (total & 3)) & 3
        guard let tls = streams.slots[i].tls else {
            guard total + padding <= streams.slots[i].outboxFree else {
                if !raw { counters.add(.streamDropsFull) }
                return false
            }
            noteOutboxFilling(slot)
            if let p = prefix { streams.slots[i].append(p, count: prefixLength) }
            streams.slots[i].append(bytes, count: count)
            streams.slots[i].appendZeros(padding)
            streams.markDirty(slot)
            counters.add(.bytesToStreams, total + padding)
            return true
        }
        guard tls.isHandshakeComplete, total + padding <= plainScratch.count else { return false }
        // Room for the records' framing too: at most 16 KiB of plaintext
        // per record, each costing well under 64 bytes of header and tag.
        let records = (total + padding) / 16_384 + 1
        guard total + padding + records * 64 <= streams.slots[i].outboxFree else {
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
                n = try streams.slots[i].tls!.writePlaintext(
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
        if streams.slots[Int(slot)].outboxCount == 0 && streams.slots[Int(slot)].sending == 0 {
            streams.slots[Int(slot)].lastSendProgress = nowSeconds
        }
    }

    /// Peer data for a client connected over TCP/TLS: found through the
    /// allocation, queued on its connection.
    mutating func streamForward(
        allocation: AllocationID, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer, count: Int,
        payloadCount: Int
    ) {
        let slot = allocationStream[Int(allocation.slot)]
        guard Int(slot) < streams.capacity, streams.slots[Int(slot)].fd >= 0,
            streams.slots[Int(slot)].allocation == allocation
        else {
            counters.add(.dropsNoRoute)
            return
        }
        if streamQueue(slot, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count) {
            turn.tables.countToClient(allocation, bytes: payloadCount)
            counters.add(.packetsToClients)
            counters.add(.bytesToClients, prefixLength + count)
        }
    }

    /// End of a batch: one SEND per connection with queued bytes and none in
    /// flight, and receives to arm again.
    mutating func flushStreams() {
        let n = streams.beginFlush()
        for k in 0..<n {
            let slot = streams.dirty[k]
            streams.clearDirty(slot)
            if streams.slots[Int(slot)].role != .client {
                flushDataConnection(slot)
            } else if streams.slots[Int(slot)].needsReceive && !streams.slots[Int(slot)].receiving
                && !streams.slots[Int(slot)].handingOff
            {
                armStreamReceive(slot)
            }
            let c = streams.slots[Int(slot)]
            guard c.fd >= 0 else { continue }
            guard c.sending == 0, let (bytes, count) = c.sendableRun else { continue }
            let ud = UserData(kind: .streamSend, slot: slot, generation: c.generation)
            if ring.prepareStreamSend(socket: c.fd, bytes: bytes, count: count, userData: ud) {
                streams.slots[Int(slot)].sending = count
            } else {
                counters.add(.sqFull)
                streams.markDirty(slot)
            }
        }
    }

    mutating func streamSendCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        let slot = ud.slot
        guard Int(slot) < streams.capacity, streams.slots[Int(slot)].generation == ud.generation else { return }
        streams.slots[Int(slot)].sending = 0
        guard streams.slots[Int(slot)].fd >= 0 else {
            streams.releaseIfDone(slot)
            return
        }
        guard cqe.result > 0 else {
            let ordinary = cqe.result == 0 || cqe.result == -EPIPE || cqe.result == -ECONNRESET
            closeStream(slot, why: ordinary ? nil : "send failed: \(Errno(rawValue: -cqe.result))", quietly: "send: the other end closed")
            return
        }
        streams.slots[Int(slot)].consumeSent(Int(cqe.result))
        streams.slots[Int(slot)].lastSendProgress = now.seconds
        if streams.slots[Int(slot)].handingOff {
            finishHandoff(slot)
            return
        }
        if streams.slots[Int(slot)].outboxCount > 0 { streams.markDirty(slot) }
        if streams.slots[Int(slot)].role != .client {
            // Room again: the partner may move what it holds and read on.
            if let p = streams.partner(of: slot) { streams.markDirty(p) }
            if streams.slots[Int(slot)].outboxCount == 0 && streams.slots[Int(slot)].closeWhenDrained {
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
        let c = streams.slots[Int(slot)]
        guard c.fd >= 0 else { return }
        // Logged first, so whoever sees the connection end can find why.
        let name = c.role == .client ? (c.fiveTuple.transport == .tls ? "TLS" : "TCP") : "\(c.role) data"
        if let why {
            log(.info, "connection \(c.fiveTuple.client) \(name): \(why)")
        } else {
            log(.debug, "connection \(c.fiveTuple.client) \(name): closed (\(quietly))")
        }
        Glibc.shutdown(c.fd, Int32(SHUT_RDWR))
        if c.receiving {
            _ = ring.prepareCancel(
                target: UserData(kind: .streamReceive, slot: slot, generation: c.generation),
                userData: UserData(kind: .housekeeping, slot: 0))
        }
        close(c.fd)
        if c.role != .client { dataConnectionClosed(slot, c) }
        if let a = c.allocation, turn.tables.isLive(a), turn.tables.fiveTuple(of: a) == c.fiveTuple,
            let removed = turn.removeAllocation(a)
        {
            if let e = removed.relayV4 { relays.closeRelay(e) }
            if let e = removed.relayV6 { relays.closeRelay(e) }
            counters.add(.allocationsDeleted)
            logRemoved(removed, why: "closed with its connection")
            cancelClosedRelays()
            closeConnectionsOfRemovedAllocations()
        }
        counters.add(.streamClosed)
        streams.markClosed(slot)
    }

    /// Once a second: handshakes that take too long, connections idle
    /// without an allocation, clients that stopped reading; and accepts
    /// that must be armed again.
    mutating func streamTick(now: MonotonicTime) {
        let t = now.seconds
        for i in 0..<streams.capacity where streams.slots[i].fd >= 0 {
            let c = streams.slots[i]
            let slot = UInt32(i)
            if c.role != .client {
                // Data connections: bounded by back-pressure, ended with their
                // allocation; only a CONNECT that hangs is cut short here.
                if c.connecting && t &- c.opened >= UInt32(Self.connectTimeoutSeconds) {
                    _ = ring.prepareCancel(
                        target: UserData(kind: .streamConnect, slot: slot, generation: c.generation),
                        userData: UserData(kind: .housekeeping, slot: 0))
                } else if c.closeWhenDrained && t &- c.lastSendProgress >= UInt32(streamLimits.stallSeconds) {
                    // Its partner is gone and its own reader takes nothing.
                    closeStream(slot, why: "\(c.role) data: the other end closed and this one reads nothing; closing")
                }
                continue
            }
            if let tls = c.tls, !tls.isHandshakeComplete, t &- c.opened >= UInt32(streamLimits.handshakeSeconds) {
                counters.add(.streamTimeouts)
                closeStream(slot, why: "TLS handshake not finished in \(streamLimits.handshakeSeconds) s; closing")
            } else if c.outboxCount > 0 && t &- c.lastSendProgress >= UInt32(streamLimits.stallSeconds) {
                counters.add(.streamTimeouts)
                closeStream(
                    slot,
                    why: "client reads nothing for \(streamLimits.stallSeconds) s with \(c.outboxCount) bytes queued; closing")
            } else if (c.allocation.map { !turn.tables.isLive($0) } ?? true)
                && t &- c.lastReceive >= UInt32(streamLimits.idleSeconds)
            {
                counters.add(.streamTimeouts)
                closeStream(slot, why: "idle for \(streamLimits.idleSeconds) s without an allocation; closing")
            }
        }
        for i in 0..<streamListeners.count where streamListeners[i].acceptAtTick {
            streamListeners[i].acceptAtTick = false
            streamListeners[i].needsAccept = true
        }
        rearmStreamListeners()
    }

    /// Arms the accepts that ended (part of `rearmReceives`, and the tick's).
    mutating func rearmStreamListeners() {
        for i in 0..<streamListeners.count where streamListeners[i].needsAccept {
            streamListeners[i].needsAccept = false
            armStreamListener(i)
        }
    }

    /// At shutdown: every connection closed, listeners too.
    mutating func closeAllStreams() {
        for i in 0..<streams.capacity where streams.slots[i].fd >= 0 { closeStream(UInt32(i), why: nil) }
        for i in 0..<streamListeners.count where streamListeners[i].fd >= 0 {
            close(streamListeners[i].fd)
            streamListeners[i].fd = -1
        }
    }
}
