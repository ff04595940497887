import Glibc
import STUN
import TURN
import URing

// The per-packet path: one completion in, routed through the TURN tables,
// out as a queued send. No heap allocation, no reference counting, no lock.
//
// Receive buffers are reference counted (see ReceiveBuffers): the dispatcher
// holds one reference while it looks at a buffer, each queued send that
// points into it holds another, and whoever drops the last one gives the
// buffer back. A buffer from a UDP_GRO socket holds a train of equal-size
// datagrams, walked one by one; each may go out in a different send.
extension Worker {
    @inline(never)
    mutating func dispatch(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        switch ud.kind {
        case .listenerReceive:
            if let id = cqe.bufferID {
                let h = ReceiveBuffers.handle(id: id, large: groClient)
                buffers.took(h)
                if cqe.result > 0 { fromClient(listener: Int(ud.slot), buffer: h, length: cqe.result, now: now) }
                buffers.release(h)
            }
            if !multishot || !cqe.hasMore { receiveEnded(cqe, listener: Int(ud.slot)) }
        case .relayReceive:
            let live = relays.live(slot: ud.slot, generation: ud.generation)
            if let id = cqe.bufferID {
                let h = ReceiveBuffers.handle(id: id, large: groPeer)
                buffers.took(h)
                if cqe.result > 0, let s = live {
                    fromPeer(relaySlot: Int(ud.slot), socket: s, buffer: h, length: cqe.result, now: now)
                }
                buffers.release(h)
            }
            if live != nil && (!multishot || !cqe.hasMore) {
                if cqe.result == -ENOBUFS { counters.add(.enobufs) }
                rearmRelays.append(ud)
                pendingRearm = true
            }
        case .send:
            sendCompleted(op: ud.slot, result: cqe.result)
        case .streamReceive:
            streamReceiveCompleted(cqe, now: now)
        case .streamSend:
            streamSendCompleted(cqe, now: now)
        case .streamAccept:
            acceptCompleted(cqe, listener: Int(ud.slot), now: now)
        case .streamConnect:
            connectCompleted(cqe, now: now)
        case .relayAccept:
            relayAcceptCompleted(cqe, now: now)
        case .wake:
            takeNewConfiguration()
            takeNewTLSContext()
            takeHandoffs(now: now)
            checkStopRequest(now: now)
        default:
            break
        }
    }

    mutating func receiveEnded(_ cqe: Completion, listener: Int) {
        if cqe.result == -ENOBUFS { counters.add(.enobufs) }
        rearmListeners[listener] = true
        pendingRearm = true
    }

    /// What a receive delivered: the payload (one datagram, or a GRO train
    /// of `segmentSize`-byte datagrams), with room before it for a header.
    struct Received {
        var payload: UnsafeMutableRawBufferPointer
        var source: TransportAddress
        /// 0 when the payload is one datagram.
        var segmentSize: Int

        /// The train's datagram starting at `offset` (the last may be shorter).
        @inline(__always)
        func datagram(at offset: Int) -> UnsafeMutableRawBufferPointer {
            let n = min(segmentSize, payload.count - offset)
            return UnsafeMutableRawBufferPointer(rebasing: payload[offset..<(offset + n)])
        }
    }

    /// Multishot puts ~200 bytes of recvmsg header, address and control
    /// before the payload; the single-shot path puts the payload at offset 0,
    /// so it is moved up by `singleShotHeadroom` (the 5.19 path pays one memmove).
    @inline(__always)
    func received(buffer h: UInt16, length: Int32, header rh: borrowing ReceiveMessageHeader) -> Received? {
        let base = buffers.base(h)
        let message: ReceivedMessage
        if multishot {
            guard let m = rh.parseMultishot(buffer: base, length: length) else { return nil }
            message = m
        } else {
            message = rh.parseSingleShot(buffer: base, length: length)
        }
        guard !message.isPayloadTruncated, message.payload.count > 0, let nameBase = message.name.baseAddress,
            let source = TransportAddress(sockaddr: nameBase, length: message.name.count)
        else { return nil }
        if multishot {
            var segment = 0
            if h & ReceiveBuffers.largeFlag != 0, let s = message.groSegmentSize, s > 0, s < message.payload.count {
                segment = s
            }
            return Received(payload: message.payload, source: source, segmentSize: segment)
        }
        let n = message.payload.count
        guard n + Self.singleShotHeadroom <= buffers.size(h) else { return nil }
        (base + Self.singleShotHeadroom).copyMemory(from: base, byteCount: n)
        return Received(
            payload: UnsafeMutableRawBufferPointer(start: base + Self.singleShotHeadroom, count: n), source: source,
            segmentSize: 0)
    }

    /// Room kept before the payload on the single-shot path: the largest
    /// Data-indication prefix (20 + 24 + 4 bytes), rounded up.
    static var singleShotHeadroom: Int { 64 }

    @inline(__always)
    mutating func countTrain(_ r: Received) {
        counters.add(.groTrains)
        counters.add(.groDatagrams, (r.payload.count + r.segmentSize - 1) / r.segmentSize)
    }

    // MARK: Client → relay

    @inline(__always)
    mutating func fromClient(listener li: Int, buffer h: UInt16, length: Int32, now: MonotonicTime) {
        let got =
            multishot
            ? received(buffer: h, length: length, header: header)
            : received(buffer: h, length: length, header: singleShotHeaders![li])
        guard let r = got else {
            counters.add(.dropsTruncated)
            return
        }
        let listener = listeners[li]
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
            forwardChannelData(datagram, fiveTuple: fiveTuple, buffer: h, now: now)
        case .stun:
            handleSTUN(datagram, fiveTuple: fiveTuple, reply: reply, buffer: h, now: now)
        default:
            counters.add(.dropsMalformed)
        }
    }

    @inline(__always)
    mutating func forwardChannelData(
        _ datagram: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, buffer h: UInt16?, now: MonotonicTime
    ) {
        let frame: ChannelData
        do throws(STUNError) {
            frame = try ChannelData(parsing: UnsafeRawBufferPointer(datagram))
        } catch {
            counters.add(.dropsMalformed)
            return
        }
        guard let (allocation, peer) = turn.routeChannelData(channel: frame.channelNumber, from: fiveTuple, now: now),
            let fd = relayFD(allocation, family: peer.ip.family),
            turn.tables.admitBandwidth(allocation, bytes: frame.payload.count, now: now)
        else {
            counters.add(.dropsNoRoute)
            return
        }
        turn.tables.countToPeer(allocation, bytes: frame.payload.count)
        sendToPeer(fd: fd, peer: peer, bytes: frame.payload, buffer: h)
    }

    @inline(__always)
    mutating func sendToPeer(fd: Int32, peer: TransportAddress, bytes: UnsafeRawBufferPointer, buffer: UInt16?) {
        guard let base = bytes.baseAddress else { return }
        guard let h = buffer else {
            // Bytes outside the receive buffers (a frame gathered from a
            // stream): copied into the send's own scratch.
            guard bytes.count <= SendBatcher.scratchSize else {
                counters.add(.dropsTruncated)
                return
            }
            if batcher.enqueueGenerated(fd: fd, to: peer, { out in
                out.copyMemory(from: bytes)
                return bytes.count
            }) {
                counters.add(.packetsToPeers)
                counters.add(.bytesToPeers, bytes.count)
            } else {
                counters.add(.dropsNoSendOp)
            }
            return
        }
        if batcher.enqueue(fd: fd, to: peer, bytes: base, count: bytes.count, buffer: h) {
            buffers.retain(h)
            counters.add(.packetsToPeers)
            counters.add(.bytesToPeers, bytes.count)
        } else {
            counters.add(.dropsNoSendOp)
        }
    }

    /// The relay socket of `allocation` for a peer of `family`.
    @inline(__always)
    func relayFD(_ allocation: AllocationID, family: IPAddress.Family) -> Int32? {
        guard let r = turn.tables.relays(of: allocation) else { return nil }
        guard let endpoint = family == .v4 ? r.v4 : r.v6 else { return nil }
        let fd = relays.fd(ofHandle: endpoint.handle)
        return fd >= 0 ? fd : nil
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
        let outcome = turn.handleSTUN(
            UnsafeRawBufferPointer(payload), from: fiveTuple, now: now, unixTime: Int64(time(nil)),
            response: response, relays: &relays)
        switch outcome.effect {
        case .sendToPeer(let allocation, let peer, let range, _):
            if let fd = relayFD(allocation, family: peer.ip.family),
                turn.tables.admitBandwidth(allocation, bytes: range.count, now: now)
            {
                turn.tables.countToPeer(allocation, bytes: range.count)
                sendToPeer(fd: fd, peer: peer, bytes: UnsafeRawBufferPointer(rebasing: payload[range]), buffer: h)
            } else {
                counters.add(.dropsNoRoute)
            }
        case .allocationCreated(let allocation, let v4, let v6):
            counters.add(.allocationsCreated)
            if case .stream(let slot) = reply { streamAllocated(slot, allocation) }
            let relayed = [v4, v6].compactMap { $0?.address.description }.joined(separator: " ")
            log(
                .info,
                "allocation created: client \(fiveTuple.client) via \(fiveTuple.server) user \(turn.username(of: allocation) ?? "?") relay \(relayed) id \(allocation.slot).\(allocation.generation)")
        case .allocationDeleted(let removed):
            counters.add(.allocationsDeleted)
            logRemoved(removed, why: "deleted")
            if removed.relayTransport == .tcp { closeConnectionsOfRemovedAllocations() }
        case .dropped:
            counters.add(.dropsMalformed)
        case .none:
            break
        }
        if outcome.responseLength > 0 {
            counters.add(.stunRequests)
            let n = outcome.responseLength
            noteIfRefused(
                request: UnsafeRawBufferPointer(payload), response: UnsafeRawBufferPointer(rebasing: response[0..<n]),
                client: fiveTuple.client, now: now)
            replyToClient(reply, fiveTuple.client, UnsafeRawBufferPointer(rebasing: response[0..<n]))
        }
        // RFC 6062, after the response (ConnectionBind's goes out before
        // the connection turns into a data connection).
        if let effect = outcome.tcpRelay { tcpRelayEffect(effect, reply: reply, now: now) }
        armNewRelays()
        cancelClosedRelays()
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
        let got =
            multishot
            ? received(buffer: h, length: length, header: header)
            : received(buffer: h, length: length, header: singleShotHeaders![listeners.count + relaySlot])
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
                if base + count + padding <= buffers.base(h) + buffers.size(h) {
                    (base + count).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
                    length += padding
                    padding = 0
                }
            }
        case .drop:
            counters.add(.dropsNoRoute)
            return
        }
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
        if client.transport != .udp {
            // A stream pads every message itself (streamQueue), so `padding` is not passed.
            streamForward(
                allocation: allocation, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count,
                payloadCount: payloadCount)
            return
        }
        guard let listenerFD = listenerFD(for: client.server) else {
            counters.add(.dropsNoRoute)
            return
        }
        turn.tables.countToClient(allocation, bytes: payloadCount)
        if batcher.enqueue(
            fd: listenerFD, to: client.client, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count,
            padding: padding, buffer: h)
        {
            buffers.retain(h)
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
            let ok = batcher.enqueueGenerated(fd: fd, to: client) { out in
                out.copyMemory(from: message)
                return message.count
            }
            if !ok { counters.add(.dropsNoSendOp) }
        case .stream(let slot):
            _ = streamQueue(slot, prefix: nil, prefixLength: 0, bytes: message.baseAddress!, count: message.count)
        }
    }

    @inline(__always)
    func listenerFD(for local: TransportAddress) -> Int32? {
        for i in 0..<listeners.count where listeners[i].local == local { return listeners[i].fd }
        return nil
    }
}
