import Glibc
import Synchronization
import STUN
import TURN
import URing

/// A client connection moving to the worker that owns the CONNECTION-ID
/// of its ConnectionBind (see `handOffIfForeign`).
struct StreamHandoff: @unchecked Sendable {
    var fd: Int32
    var fiveTuple: FiveTuple
    /// Moves with the connection: the receiving worker owns it from now on.
    var tls: TLSStream?
    /// The ConnectionBind request, to be handled there as if read there.
    var request: [UInt8]
    /// Bytes queued for the client and not sent yet (TLS records already
    /// numbered by the session): sent there before anything else.
    var unsent: [UInt8]
}

// RFC 6062 TCP relaying. A TCP allocation has a listener on its relayed
// address (RelaySockets.openTCPRelay). Connect makes the worker connect to
// the peer from that address; a peer connecting to it is announced with a
// ConnectionAttempt. Either way the peer connection waits for the client's
// ConnectionBind on a new connection, after which the two are data
// connections: raw bytes relayed both ways with back-pressure (no receive is
// armed on one side while the other cannot take a buffer's worth). The TURN
// state machine keeps the connection IDs, permissions and the 30 s bind
// timer; this file does the sockets.
extension Worker {
    /// A CONNECT not finished after this long is cancelled (the client gets 447).
    static var connectTimeoutSeconds: Int { 30 }

    // MARK: Effects of Connect and ConnectionBind

    mutating func tcpRelayEffect(_ effect: TCPRelayEffect, reply: ClientReply, now: MonotonicTime) {
        switch effect {
        case .connectToPeer(let allocation, let peer, let connectionID):
            startConnect(allocation: allocation, peer: peer, connectionID: connectionID, now: now)
        case .bindConnection(let connectionID, _, _):
            guard case .stream(let slot) = reply else { return }
            bind(client: slot, connectionID: connectionID)
        }
    }

    mutating func startConnect(allocation: AllocationID, peer: TransportAddress, connectionID: UInt32, now: MonotonicTime) {
        func fail(_ why: String) {
            log(.info, "RFC 6062 connect to \(peer): \(why)")
            answerConnect(connectionID, allocation: allocation, success: false, now: now)
        }
        guard let relays4and6 = turn.tables.relays(of: allocation),
            let endpoint = peer.ip.family == .v4 ? relays4and6.v4 : relays4and6.v6,
            let local = relays.boundAddress(ofHandle: endpoint.handle)
        else { return fail("the allocation has no relayed address of that family") }
        let socket: StreamSocket
        do { socket = try StreamSocket.bound(forConnectingFrom: SocketAddress(local)) } catch {
            return fail("\(error)")
        }
        let fiveTuple = FiveTuple(client: peer, server: local, transport: .tcp)
        guard let slot = streams.open(fd: socket.rawValue, fiveTuple: fiveTuple, tls: nil, now: now.seconds) else {
            socket.close()
            return fail("no room for another connection on this worker (--tcp-connections)")
        }
        try? socket.setNoDelay()
        let i = Int(slot)
        streams.slots[i].role = .peer
        streams.slots[i].relayAllocation = allocation
        streams.slots[i].connectionID = connectionID
        streams.slots[i].connecting = true
        // The kernel reads the address until the CQE: it lives in the table.
        let address = streams.connectAddresses + i
        let length = peer.store(sockaddr: UnsafeMutableRawPointer(address))
        let target = UnsafeRawPointer(address).assumingMemoryBound(to: sockaddr.self)
        let ud = UserData(kind: .streamConnect, slot: slot, generation: streams.slots[i].generation)
        for attempt in 0..<2 {
            if ring.prepareConnect(socket: socket.rawValue, address: target, length: length, userData: ud) { return }
            if attempt == 0 { flushSubmissions() }  // the SQ is full: submit, try once more
        }
        closeStream(slot, why: "connect: the submission queue is full")
    }

    mutating func connectCompleted(_ cqe: Completion, now: MonotonicTime) {
        let slot = cqe.userData.slot
        guard streams.isOpen(slot, generation: cqe.userData.generation), streams.slots[Int(slot)].connecting else { return }
        streams.slots[Int(slot)].connecting = false
        let c = streams.slots[Int(slot)]
        if cqe.result == 0 {
            counters.add(.streamAccepted)
            answerConnect(c.connectionID, allocation: c.relayAllocation, success: true, now: now)
            // The connection now waits (not read) for its ConnectionBind.
        } else {
            log(.info, "RFC 6062 connect to \(c.fiveTuple.client) failed: \(Errno(rawValue: -cqe.result))")
            // closeStream answers 447 for a connection still marked connecting.
            streams.slots[Int(slot)].connecting = true
            closeStream(slot, why: nil, quietly: "connect failed")
        }
    }

    /// Sends the Connect response (success with CONNECTION-ID, or 447) on the
    /// allocation's control connection.
    mutating func answerConnect(_ connectionID: UInt32, allocation: AllocationID, success: Bool, now: MonotonicTime) {
        guard let (n, _) = turn.connectCompleted(connectionID: connectionID, success: success, now: now, into: response)
        else { return }
        if let control = controlConnection(of: allocation) {
            streamQueue(control, prefix: nil, prefixLength: 0, bytes: response.baseAddress!, count: n)
        }
    }

    /// The client connection an allocation was made over, if still open.
    func controlConnection(of allocation: AllocationID) -> UInt32? {
        let slot = allocationStream[Int(allocation.slot)]
        guard Int(slot) < streams.capacity, streams.slots[Int(slot)].fd >= 0,
            streams.slots[Int(slot)].allocation == allocation
        else { return nil }
        return slot
    }

    /// ConnectionBind succeeded on `client` (its response is queued): it and
    /// the peer connection become a pair of data connections.
    mutating func bind(client: UInt32, connectionID: UInt32) {
        guard let peer = streams.peerConnection(connectionID) else {
            closeStream(client, why: "ConnectionBind: the peer connection is gone; closing")
            return
        }
        let c = Int(client)
        let p = Int(peer)
        streams.slots[c].role = .clientData
        streams.slots[c].connectionID = connectionID
        streams.slots[c].relayAllocation = streams.slots[p].relayAllocation
        streams.slots[c].partner = peer
        streams.slots[c].partnerGeneration = streams.slots[p].generation
        streams.slots[p].partner = client
        streams.slots[p].partnerGeneration = streams.slots[c].generation
        // The client's multishot receive (for STUN) ends; from now on one
        // buffer at a time. What it still delivers is relayed or held.
        if streams.slots[c].receiving && multishot {
            _ = ring.prepareCancel(
                target: UserData(kind: .streamReceive, slot: client, generation: streams.slots[c].generation),
                userData: UserData(kind: .housekeeping, slot: 0))
        }
        streams.slots[c].needsReceive = true
        streams.slots[p].needsReceive = true
        streams.markDirty(client)
        streams.markDirty(peer)
    }

    // MARK: Peers connecting to a relayed address

    mutating func armRelayAccept(slot: UInt32, generation: UInt32, fd: Int32) {
        let ud = UserData(kind: .relayAccept, slot: slot, generation: generation)
        if !ring.prepareAcceptMultishot(socket: fd, userData: ud) {
            flushSubmissions()
            if !ring.prepareAcceptMultishot(socket: fd, userData: ud) {
                log(.warning, "worker \(index): cannot arm the TCP relay listener (submission queue full)")
            }
        }
    }

    mutating func relayAcceptCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        guard let relay = relays.live(slot: ud.slot, generation: ud.generation) else {
            if cqe.result >= 0 { close(cqe.result) }
            return
        }
        if cqe.result >= 0 { peerConnected(fd: cqe.result, allocation: relay.allocation, now: now) }
        if !cqe.hasMore && cqe.result != -ECANCELED {
            armRelayAccept(slot: ud.slot, generation: ud.generation, fd: relay.fd)
        }
    }

    mutating func peerConnected(fd: Int32, allocation: AllocationID, now: MonotonicTime) {
        let socket = StreamSocket(rawValue: fd)
        guard let peerAddress = try? socket.peerAddress(), let localAddress = try? socket.localAddress() else {
            socket.close()
            return
        }
        let peer = TransportAddress(peerAddress)
        guard let control = controlConnection(of: allocation),
            let (connectionID, n, _) = turn.peerConnectionArrived(
                allocation: allocation, peer: peer, now: now, into: response)
        else {
            // No permission for that peer (or no room): refused, as RFC 6062 §5.3 says.
            socket.close()
            return
        }
        let fiveTuple = FiveTuple(client: peer, server: TransportAddress(localAddress), transport: .tcp)
        guard let slot = streams.open(fd: fd, fiveTuple: fiveTuple, tls: nil, now: now.seconds) else {
            turn.removeConnection(connectionID)
            socket.close()
            return
        }
        try? socket.setNoDelay()
        counters.add(.streamAccepted)
        streams.slots[Int(slot)].role = .peer
        streams.slots[Int(slot)].relayAllocation = allocation
        streams.slots[Int(slot)].connectionID = connectionID
        streamQueue(control, prefix: nil, prefixLength: 0, bytes: response.baseAddress!, count: n)
    }

    // MARK: Relaying raw bytes

    /// Bytes read on a data connection: straight into the partner's outbox
    /// when it has room and nothing is held, else held in the inbox (and no
    /// receive is armed until it is empty again).
    mutating func rawReceived(_ slot: UInt32, _ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let relayed =
            streams.slots[Int(slot)].inboxCount == 0
            && streams.partner(of: slot).map {
                streamQueue($0, prefix: nil, prefixLength: 0, bytes: base, count: bytes.count, raw: true)
            } == true
        if !relayed {
            guard appendToInbox(slot, bytes) else { return }
        }
        streams.slots[Int(slot)].needsReceive = true
        streams.markDirty(slot)
    }

    /// At the end of a batch: move held bytes to the partner, close a side
    /// whose partner ended once its outbox is sent, and read on when the
    /// partner has room for another buffer.
    mutating func flushDataConnection(_ slot: UInt32) {
        let i = Int(slot)
        guard streams.slots[i].fd >= 0 else { return }
        let partner = streams.partner(of: slot)
        if streams.slots[i].inboxCount > 0, let p = partner, let inbox = streams.slots[i].inbox,
            streamQueue(p, prefix: nil, prefixLength: 0, bytes: inbox, count: streams.slots[i].inboxCount, raw: true)
        {
            streams.slots[i].inboxCount = 0
        }
        if streams.slots[i].closeWhenDrained && streams.slots[i].outboxCount == 0 && streams.slots[i].sending == 0 {
            closeStream(slot, why: nil, quietly: "partner ended, queue sent")
            return
        }
        guard streams.slots[i].needsReceive, !streams.slots[i].receiving, streams.slots[i].inboxCount == 0,
            let p = partner, streams.slots[Int(p)].outboxFree >= buffers.size(0) + 256
        else { return }
        armStreamReceive(slot)
    }

    /// A data connection (or a peer connection not yet bound) closed: the
    /// TURN state forgets it (a CONNECT in flight answers 447), and its
    /// partner closes once it has sent what it holds.
    mutating func dataConnectionClosed(_ slot: UInt32, _ c: StreamConnection) {
        if c.connecting {
            answerConnect(c.connectionID, allocation: c.relayAllocation, success: false, now: Self.monotonicNow())
        } else {
            turn.removeConnection(c.connectionID)
        }
        guard c.partner != .max, streams.isOpen(c.partner, generation: c.partnerGeneration) else { return }
        let p = Int(c.partner)
        streams.slots[p].partner = .max
        if streams.slots[p].outboxCount == 0 && streams.slots[p].sending == 0 {
            closeStream(c.partner, why: nil, quietly: "partner ended")
        } else {
            streams.slots[p].closeWhenDrained = true
        }
    }

    /// Closes the peer (and bound client data) connections of allocations
    /// that went away, and those that waited 30 s for a ConnectionBind.
    mutating func closeConnectionsOfRemovedAllocations() {
        while let (connectionID, _) = turn.nextClosedConnection() {
            if let slot = streams.peerConnection(connectionID) { closeStream(slot, why: nil, quietly: "allocation gone") }
        }
    }

    mutating func tcpRelayTick(now: MonotonicTime) {
        while let (connectionID, _) = turn.nextExpiredConnection(now: now) {
            if let slot = streams.peerConnection(connectionID) {
                closeStream(slot, why: "no ConnectionBind for CONNECTION-ID \(connectionID) within 30 s; closing the peer connection")
            }
        }
        closeConnectionsOfRemovedAllocations()
    }

    // MARK: ConnectionBind on another worker

    /// Bits of a CONNECTION-ID that name the worker that issued it.
    static func connectionIDTagBits(workers: Int) -> Int {
        workers <= 1 ? 0 : Int.bitWidth - (workers - 1).leadingZeroBitCount
    }

    /// A ConnectionBind whose CONNECTION-ID another worker issued: the
    /// connection (descriptor, TLS session, the request) moves to that
    /// worker, which answers it as if it had read it. SO_REUSEPORT picks the
    /// worker of a new connection by its address, so this is the common case
    /// with several workers. Returns true when it moved.
    mutating func handOffIfForeign(_ slot: UInt32, _ frame: UnsafeRawBufferPointer) -> Bool {
        let bits = Self.connectionIDTagBits(workers: siblings.count)
        guard bits > 0, let message = try? STUNMessage(parsing: frame), message.method == .connectionBind,
            message.messageClass == .request, let connectionID = message.connectionID
        else { return false }
        let owner = Int(connectionID >> UInt32(32 - bits))
        guard owner != index, owner < siblings.count else { return false }
        let c = streams.slots[Int(slot)]
        if c.receiving {
            _ = ring.prepareCancel(
                target: UserData(kind: .streamReceive, slot: slot, generation: c.generation),
                userData: UserData(kind: .housekeeping, slot: 0))
            flushSubmissions()  // stop reading here before the owner starts
        }
        log(.info, "connection \(c.fiveTuple.client): ConnectionBind for CONNECTION-ID \(connectionID) goes to worker \(owner), which issued it")
        streams.slots[Int(slot)].handingOff = true
        pendingHandoffs.append((slot, owner, Array(frame)))
        // A send in flight finishes here first (its bytes come before
        // anything the owner sends); then the rest of the queue moves along.
        if c.sending == 0 { finishHandoff(slot) }
        return true
    }

    /// Moves a connection marked `handingOff` whose last send completed.
    mutating func finishHandoff(_ slot: UInt32) {
        guard let k = pendingHandoffs.firstIndex(where: { $0.slot == slot }) else { return }
        let (_, owner, request) = pendingHandoffs.remove(at: k)
        let c = streams.slots[Int(slot)]
        var unsent = [UInt8]()
        if let out = c.outbox, c.outboxCount > 0 {
            unsent.reserveCapacity(c.outboxCount)
            let first = min(c.outboxCount, c.outboxCapacity - c.outboxHead)
            unsent += UnsafeRawBufferPointer(start: out + c.outboxHead, count: first)
            unsent += UnsafeRawBufferPointer(start: out, count: c.outboxCount - first)
        }
        let handoff = StreamHandoff(fd: c.fd, fiveTuple: c.fiveTuple, tls: c.tls, request: request, unsent: unsent)
        streams.markHandedOff(slot)
        siblings[owner].handOff(handoff)
    }

    /// Takes connections other workers handed over and answers their ConnectionBind.
    mutating func takeHandoffs(now: MonotonicTime) {
        let moved = control.takeHandoffs()
        for h in moved {
            guard let slot = streams.open(fd: h.fd, fiveTuple: h.fiveTuple, tls: h.tls, now: now.seconds) else {
                var tls = h.tls
                tls?.free()
                close(h.fd)
                continue
            }
            if !h.unsent.isEmpty {
                h.unsent.withUnsafeBytes { u in
                    streams.slots[Int(slot)].append(u.baseAddress!, count: min(u.count, streams.slots[Int(slot)].outboxFree))
                }
                streams.markDirty(slot)
            }
            h.request.withUnsafeBytes { r in
                _ = appendToInbox(slot, r)
            }
            processInbox(slot, now: now)
            if streams.slots[Int(slot)].fd >= 0 && streams.slots[Int(slot)].role == .client {
                streams.slots[Int(slot)].needsReceive = true
                streams.markDirty(slot)
            }
        }
    }
}

extension WorkerControl {
    func handOff(_ h: StreamHandoff) {
        handoffs.withLock { $0.append(h) }
        waker.withLock { $0?.wake() }
    }

    func takeHandoffs() -> [StreamHandoff] {
        handoffs.withLock { list in
            defer { list.removeAll() }
            return list
        }
    }
}

extension UserData.Kind {
    /// A CONNECT to a peer (RFC 6062); slot, generation = the connection's.
    static var streamConnect: UserData.Kind { UserData.Kind(rawValue: 9) }
}
