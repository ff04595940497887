import Glibc
import STUN
import TURN
import URing

/// Where the answer to a client's request goes: the UDP listener socket it
/// came in on, or the stream connection (TCP/TLS) it came over.
enum ClientReply {
    case datagram(Int32)
    case stream(UInt32)
    /// A DTLS session (DTLS/DTLSSessions.swift): encrypted, then sent on its listener.
    case dtls(UInt32)
}

// The per-packet path: what a part received, routed through the TURN tables
// to the part that sends it. No heap allocation, no reference counting, no
// lock.
extension Worker {
    @inline(__always)
    mutating func countTrain(_ r: Received) {
        counters.add(.groTrains)
        counters.add(.groDatagrams, r.trainLength)
    }

    // MARK: Client → relay

    @inline(__always)
    mutating func fromClient(listener li: Int, header: Int? = nil, buffer h: UInt16, length: Int32, now: MonotonicTime) {
        // `header`: the single-shot header of the socket it came on when that
        // is not the listener itself (a moved client's connected socket).
        let got = reactor.received(buffer: h, length: length, singleShotHeader: header ?? li)
        guard let r = got else {
            counters.add(.dropsTruncated)
            return
        }
        let listener = datagram.listeners[li]
        let fiveTuple = FiveTuple(client: r.source, server: listener.local, transport: .udp)
        if r.segmentSize == 0 {
            fromClient(datagram: r.payload, fiveTuple: fiveTuple, reply: .datagram(listener.fd), buffer: h, now: now)
            return
        }
        // A GRO train: each datagram has its own ChannelData or STUN header.
        countTrain(r)
        var offset = 0
        while offset < r.payload.count {
            let datagram = r.datagram(at: offset)
            fromClient(datagram: datagram, fiveTuple: fiveTuple, reply: .datagram(listener.fd), buffer: h, now: now)
            offset += datagram.count
        }
    }

    @inline(__always)
    mutating func fromClient(
        datagram: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, reply: ClientReply, buffer h: UInt16?,
        now: MonotonicTime
    ) {
        counters.add(.packetsFromClients)
        counters.add(.bytesFromClients, datagram.count)
        switch PacketKind(classifying: UnsafeRawBufferPointer(datagram)) {
        case .channelData:
            forwardChannelData(datagram, fiveTuple: fiveTuple, reply: reply, buffer: h, now: now)
        case .stun:
            handleSTUN(datagram, fiveTuple: fiveTuple, reply: reply, buffer: h, now: now)
        default:
            counters.add(.dropsMalformed)
            noteUnanswered(UnsafeRawBufferPointer(datagram), fiveTuple: fiveTuple, reply: reply, now: now)
        }
    }

    @inline(__always)
    mutating func forwardChannelData(
        _ datagram: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, reply: ClientReply, buffer h: UInt16?,
        now: MonotonicTime
    ) {
        let frame: ChannelData
        do throws(STUNError) {
            frame = try ChannelData(parsing: UnsafeRawBufferPointer(datagram))
        } catch {
            counters.add(.dropsMalformed)
            noteUnanswered(UnsafeRawBufferPointer(datagram), fiveTuple: fiveTuple, reply: reply, now: now)
            return
        }
        guard let (allocation, peer) = turn.routeChannelData(channel: frame.channelNumber, from: fiveTuple, now: now),
            let fd = relayFD(allocation, family: peer.ip.family)
        else {
            counters.add(.dropsNoRoute)
            noteUnanswered(UnsafeRawBufferPointer(datagram), fiveTuple: fiveTuple, reply: reply, now: now)
            return
        }
        guard admitToPeer(allocation, bytes: frame.payload.count, reply: reply, now: now) else { return }
        sendToPeer(fd: fd, peer: peer, bytes: frame.payload, buffer: h)
    }

    /// Client data for a peer under the traffic limits: over a datagram
    /// transport, dropped (and counted) when over them; over a TCP or TLS
    /// connection it passes (it was read), and the connection pauses when
    /// the byte rate is used up (StreamPart+Pause.swift). `--max-pps` drops
    /// on every transport.
    @inline(__always)
    mutating func admitToPeer(_ allocation: AllocationID, bytes: Int, reply: ClientReply, now: MonotonicTime) -> Bool {
        if case .stream(let slot) = reply {
            let (pass, keepReading) = turn.chargeStreamToPeer(allocation, bytes: bytes, now: now)
            if !keepReading { pauseStream(slot, allocation: allocation, toPeer: true, now: now) }
            if !pass { countPolicyDrop(.pps) }
            return pass
        }
        let admission = turn.admitToPeer(allocation, bytes: bytes, now: now)
        guard admission == .pass else {
            countPolicyDrop(admission)
            return false
        }
        return true
    }

    @inline(__always)
    mutating func sendToPeer(fd: Int32, peer: TransportAddress, bytes: UnsafeRawBufferPointer, buffer: UInt16?) {
        if datagram.sendToPeer(fd: fd, peer: peer, bytes: bytes, buffer: buffer, &reactor.buffers) {
            counters.add(.packetsToPeers)
            counters.add(.bytesToPeers, bytes.count)
        } else {
            counters.add(bytes.count > SendBatcher.scratchSize && buffer == nil ? .dropsTruncated : .dropsNoSendOp)
        }
    }

    /// Counts a packet the traffic limits dropped, by the limit that did.
    @inline(__always)
    mutating func countPolicyDrop(_ admission: Admission) {
        switch admission {
        case .pass: break
        case .bps: counters.add(.policyDropsBps)
        case .userBps: counters.add(.policyDropsUserBps)
        case .capacity: counters.add(.policyDropsCapacity)
        case .pps: counters.add(.policyDropsPps)
        }
    }

    /// The relay socket of `allocation` for a peer of `family`.
    @inline(__always)
    func relayFD(_ allocation: AllocationID, family: IPAddress.Family) -> Int32? {
        guard let endpoint = turn.relayEndpoint(of: allocation, family: family) else { return nil }
        return datagram.relayFD(endpoint)
    }

    /// STUN from a client: Send indications are data path (forwarded from the
    /// receive buffer); requests are answered inline from the response scratch.
    mutating func handleSTUN(
        _ payload: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, reply: ClientReply, buffer h: UInt16?,
        now: MonotonicTime
    ) {
        if draining && refuseWhileDraining(UnsafeRawBufferPointer(payload), to: fiveTuple.client, reply: reply) {
            return
        }
        // Only requests (class bits C1 0x0100 and C0 0x0010 clear), and only
        // with a user database (Worker+Lookup.swift): Send indications never go further.
        if lookupsOn && payload.count >= 20 && payload[0] & 0x01 == 0 && payload[1] & 0x10 == 0
            && parkForLookup(payload, fiveTuple: fiveTuple, reply: reply, now: now)
        {
            return
        }
        let outcome = turn.handleSTUN(
            UnsafeRawBufferPointer(payload), from: fiveTuple, now: now, unixTime: Int64(time(nil)),
            response: response, relays: &datagram.relays)
        switch outcome.effect {
        case .sendToPeer(let allocation, let peer, let range, _):
            if let fd = relayFD(allocation, family: peer.ip.family) {
                if admitToPeer(allocation, bytes: range.count, reply: reply, now: now) {
                    sendToPeer(fd: fd, peer: peer, bytes: UnsafeRawBufferPointer(rebasing: payload[range]), buffer: h)
                }
            } else {
                counters.add(.dropsNoRoute)
            }
        case .allocationCreated(let allocation, let v4, let v6):
            counters.add(.allocationsCreated)
            unblockSource(fiveTuple, reply: reply, now: now)
            // Peer data for it goes back over the connection it was made over.
            if case .stream(let slot) = reply { stream.noteAllocation(allocation, madeOver: slot) }
            let relayed = [v4, v6].compactMap { $0?.address.description }.joined(separator: " ")
            log(
                .info,
                "allocation created: client \(fiveTuple.client) via \(fiveTuple.server) user \(turn.username(of: allocation) ?? "?") relay \(relayed) id \(allocation.slot).\(allocation.generation)")
        case .allocationMoved(let allocation, let old):
            // RFC 8016: the kernel routes named the old 5-tuple; drop them
            // here, and the sync after the response writes them for the new one.
            moveFastPath(allocation, now: now)
            counters.add(.allocationsMoved)
            unblockSource(fiveTuple, reply: reply, now: now)
            // A socket connected to the old 5-tuple (an earlier move from
            // another worker) is done with; a move handed over from another
            // worker gets its own (Worker+Mobility.swift).
            closeMovedSocket(of: allocation)
            adoptCrossWorkerMove(allocation)
            log(
                .info,
                "allocation moved: client \(old.client) via \(old.server) -> \(fiveTuple.client) via \(fiveTuple.server) user \(turn.username(of: allocation) ?? "?") id \(allocation.slot).\(allocation.generation)")
        case .allocationDeleted(var removed):
            removeFastPath(&removed, now: now)
            closeMovedSocket(of: removed.id)
            counters.add(.allocationsDeleted)
            stream.allocationGone(removed.id)
            logRemoved(removed, why: "deleted")
            if removed.relayTransport == .tcp { closeConnectionsOfRemovedAllocations() }
        case .dropped(.rateLimitedUnauthenticated):
            counters.add(.rateLimitedUnauthenticated)
            blockSource(after: .rateLimitedUnauthenticated, fiveTuple: fiveTuple, reply: reply, now: now)
        case .dropped(.rateLimitedCredentials):
            counters.add(.rateLimitedCredentials)
            blockSource(after: .rateLimitedCredentials, fiveTuple: fiveTuple, reply: reply, now: now)
        case .dropped(.rateLimitedMalformed):
            counters.add(.rateLimitedMalformed)
            blockSource(after: .rateLimitedMalformed, fiveTuple: fiveTuple, reply: reply, now: now)
        case .dropped(.rateLimitedBinding):
            counters.add(.rateLimitedBinding)
            blockSource(after: .rateLimitedBinding, fiveTuple: fiveTuple, reply: reply, now: now)
        case .dropped:
            counters.add(.dropsMalformed)
            noteUnanswered(UnsafeRawBufferPointer(payload), fiveTuple: fiveTuple, reply: reply, now: now)
        case .forwardMove(let owner):
            // The new 5-tuple may have sent ChannelData before its Refresh.
            unblockSource(fiveTuple, reply: reply, now: now)
            forwardMove(payload, fiveTuple: fiveTuple, to: Int(owner))
        case .none, .tcpRelay:
            break  // RFC 6062 effects are applied after the response
        }
        if outcome.responseLength > 0 {
            counters.add(.stunRequests)
            let n = outcome.responseLength
            noteIfRefused(
                request: UnsafeRawBufferPointer(payload), response: UnsafeRawBufferPointer(rebasing: response[0..<n]),
                client: fiveTuple.client, now: now)
            var via = reply
            var destination = fiveTuple.client
            // RFC 5780: CHANGE-REQUEST picks another of the listeners,
            // RESPONSE-PORT another port of the client (UDP only).
            if case .datagram = reply {
                if let source = outcome.responseSource, let fd = datagram.listenerFD(for: source) { via = .datagram(fd) }
                if let d = outcome.responseDestination { destination = d }
            }
            replyToClient(via, destination, UnsafeRawBufferPointer(rebasing: response[0..<n]))
        }
        // RFC 6062, after the response (ConnectionBind's goes out before
        // the connection turns into a data connection).
        if let effect = outcome.tcpRelay { tcpRelayEffect(effect, reply: reply, now: now) }
        datagram.armNewRelays(&reactor)
        datagram.cancelClosedRelays(&reactor)
        syncFastPathAfterRequest(UnsafeRawBufferPointer(payload), fiveTuple: fiveTuple, now: now)
    }

    /// Counts an error response by code and logs it, at most one line a
    /// second per worker (with how many were not logged), so a flood of bad
    /// requests cannot flood the log. A 401 to an unsigned request is the
    /// normal first step of every login (the challenge): counted apart, never logged.
    mutating func noteIfRefused(
        request: UnsafeRawBufferPointer, response: UnsafeRawBufferPointer, client: TransportAddress, now: MonotonicTime
    ) {
        guard let message = try? STUNMessage(parsing: response), message.messageClass == .errorResponse,
            let code = message.errorCode?.code
        else { return }
        if code == 401, let r = try? STUNMessage(parsing: request), r.messageIntegrity == nil,
            r.messageIntegritySHA256 == nil
        {
            counters.add(.challenges)
            return
        }
        let field: WorkerCounters.Field =
            switch code {
            case 400: .refused400
            case 401: .refused401
            case 403: .refused403
            case 437: .refused437
            case 438: .refused438
            case 441: .refused441
            case 486: .refused486
            case 508: .refused508
            default: .refusedOther
            }
        counters.add(field)
        if now.nanoseconds &- lastRefusalLog < 1_000_000_000 {
            suppressedRefusals += 1
            return
        }
        let more = suppressedRefusals > 0 ? " (\(suppressedRefusals) more refusals not logged in the last second)" : ""
        log(.warning, "refused: \(code) \(message.errorCode?.reason ?? "") to \(client) for \(message.method)\(more)")
        lastRefusalLog = now.nanoseconds
        suppressedRefusals = 0
    }

    // MARK: Peer → client

    @inline(__always)
    mutating func fromPeer(
        relaySlot: Int, socket: RelaySockets.Slot, buffer h: UInt16, length: Int32, now: MonotonicTime
    ) {
        let got = reactor.received(
            buffer: h, length: length, singleShotHeader: datagram.listeners.count + relaySlot)
        guard let r = got else {
            counters.add(.dropsTruncated)
            return
        }
        if r.segmentSize == 0 {
            fromPeer(datagram: r.payload, peer: r.source, allocation: socket.allocation, buffer: h, inTrain: false, now: now)
            return
        }
        countTrain(r)
        var offset = 0
        while offset < r.payload.count {
            let datagram = r.datagram(at: offset)
            fromPeer(datagram: datagram, peer: r.source, allocation: socket.allocation, buffer: h, inTrain: true, now: now)
            offset += datagram.count
        }
    }

    /// One datagram from a peer to the client: as ChannelData when a channel
    /// is bound, else as a Data indication. A lone datagram gets its header
    /// written in place in the headroom before it (one iovec); a datagram in
    /// a GRO train has no room before it, so its header travels as a prefix
    /// iovec from the send's scratch.
    @inline(__always)
    mutating func fromPeer(
        datagram: UnsafeMutableRawBufferPointer, peer: TransportAddress, allocation: AllocationID, buffer h: UInt16,
        inTrain: Bool, now: MonotonicTime
    ) {
        counters.add(.packetsFromPeers)
        counters.add(.bytesFromPeers, datagram.count)
        guard let base = datagram.baseAddress, datagram.count <= 0xFFFF - 64 else {
            counters.add(.dropsTruncated)
            return
        }
        let count = datagram.count
        // What goes out: `prefixLength` bytes of `prefix` (trains only), then
        // `length` bytes from `start` in the receive buffer, then `padding` zeros.
        var prefix = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var prefixLength = 0
        var start = UnsafeRawPointer(base)
        var length = count
        var padding = 0
        let client: FiveTuple
        switch turn.routePeerData(to: allocation, from: peer, now: now) {
        case .channel(let number, let c):
            client = c
            if inTrain {
                withUnsafeMutableBytes(of: &prefix) { p in
                    ChannelData.writeHeader(channel: number, payloadLength: UInt16(count), to: p.baseAddress!)
                }
                prefixLength = ChannelData.headerSize
            } else {
                ChannelData.writeHeader(channel: number, payloadLength: UInt16(count), to: base - ChannelData.headerSize)
                start = UnsafeRawPointer(base - ChannelData.headerSize)
                length = count + ChannelData.headerSize
            }
        case .dataIndication(let c):
            client = c
            transactionCounter = transactionCounter &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let transaction = TransactionID(
                high: UInt32(truncatingIfNeeded: transactionCounter >> 32), low: transactionCounter)
            padding = (4 - (count & 3)) & 3
            if inTrain {
                prefixLength = withUnsafeMutableBytes(of: &prefix) { p in
                    DataIndication.writePrefix(to: p.baseAddress!, payloadLength: count, peer: peer, transactionID: transaction)
                }
            } else {
                let header = DataIndication.prefixSize(peerFamily: peer.ip.family)
                DataIndication.writePrefix(to: base - header, payloadLength: count, peer: peer, transactionID: transaction)
                start = UnsafeRawPointer(base - header)
                length = header + count
                // The padding goes in place too when the buffer has room after
                // the payload; otherwise it comes from the batcher's zeros.
                if base + count + padding <= reactor.buffers.base(h) + reactor.buffers.size(h) {
                    (base + count).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
                    length += padding
                    padding = 0
                }
            }
        case .drop:
            counters.add(.dropsNoRoute)
            return
        }
        let admission = turn.admitToClient(allocation, bytes: count, now: now)
        guard admission == .pass else { return countPolicyDrop(admission) }
        withUnsafeBytes(of: &prefix) { p in
            forward(
                to: client, bytes: start, count: length, prefix: prefixLength > 0 ? p.baseAddress : nil,
                prefixLength: prefixLength, padding: padding, allocation: allocation, payloadCount: count, buffer: h)
        }
    }

    /// Queues a datagram for the client on the listener it talks to.
    @inline(__always)
    mutating func forward(
        to client: FiveTuple, bytes: UnsafeRawPointer, count: Int, prefix: UnsafeRawPointer?, prefixLength: Int,
        padding: Int, allocation: AllocationID, payloadCount: Int, buffer h: UInt16
    ) {
        if client.transport == .dtls {
            dtlsForward(
                to: client, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count, padding: padding,
                allocation: allocation, payloadCount: payloadCount)
            return
        }
        if client.transport != .udp {
            // A stream pads every message itself (StreamPart.queue), so `padding` is not passed.
            streamForward(
                allocation: allocation, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count,
                payloadCount: payloadCount)
            return
        }
        guard let listenerFD = datagram.listenerFD(for: client.server) else {
            counters.add(.dropsNoRoute)
            return
        }
        turn.countToClient(allocation, bytes: payloadCount)
        if datagram.sendToClient(
            fd: listenerFD, client: client.client, prefix: prefix, prefixLength: prefixLength, bytes: bytes,
            count: count, padding: padding, buffer: h, &reactor.buffers)
        {
            counters.add(.packetsToClients)
            counters.add(.bytesToClients, prefixLength + count + padding)
        } else {
            counters.add(.dropsNoSendOp)
        }
    }

    /// Sends a generated message (a STUN response) to a client, over the
    /// transport its request came on.
    mutating func replyToClient(_ reply: ClientReply, _ client: TransportAddress, _ message: UnsafeRawBufferPointer) {
        switch reply {
        case .datagram(let fd):
            if !datagram.reply(fd: fd, to: client, message) { counters.add(.dropsNoSendOp) }
        case .stream(let slot):
            stream.queue(slot, prefix: nil, prefixLength: 0, bytes: message.baseAddress!, count: message.count)
        case .dtls(let slot):
            dtlsSend(slot: slot, message)
        }
    }
}
