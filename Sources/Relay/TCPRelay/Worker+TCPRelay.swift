import Glibc
import Synchronization
import STUN
import TURN
import URing

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
        guard let endpoint = turn.relayEndpoint(of: allocation, family: peer.ip.family),
            let local = datagram.relays.boundAddress(ofHandle: endpoint.handle)
        else { return fail("the allocation has no relayed address of that family") }
        let socket: StreamSocket
        do { socket = try StreamSocket.bound(forConnectingFrom: SocketAddress(local)) } catch {
            return fail("\(error)")
        }
        let fiveTuple = FiveTuple(client: peer, server: local, transport: .tcp)
        guard let slot = stream.connections.open(fd: socket.rawValue, fiveTuple: fiveTuple, tls: nil, now: now.seconds) else {
            socket.close()
            return fail("no room for another connection on this worker (--tcp-connections)")
        }
        try? socket.setNoDelay()
        let i = Int(slot)
        stream.connections.slots[i].role = .peer
        stream.connections.slots[i].relayAllocation = allocation
        stream.connections.slots[i].connectionID = connectionID
        stream.connections.slots[i].connecting = true
        // The kernel reads the address until the CQE: it lives in the table.
        let address = stream.connections.connectAddresses + i
        let length = peer.store(sockaddr: UnsafeMutableRawPointer(address))
        let target = UnsafeRawPointer(address).assumingMemoryBound(to: sockaddr.self)
        let ud = UserData(kind: .streamConnect, slot: slot, generation: stream.connections.slots[i].generation)
        reactor.submit(.connect(socket: socket.rawValue, address: target, length: length, userData: ud))
    }

    mutating func connectCompleted(_ cqe: Completion, now: MonotonicTime) {
        let slot = cqe.userData.slot
        guard stream.connections.isOpen(slot, generation: cqe.userData.generation), stream.connections.slots[Int(slot)].connecting else { return }
        stream.connections.slots[Int(slot)].connecting = false
        let c = stream.connections.slots[Int(slot)]
        if cqe.result == 0 {
            counters.add(.streamAccepted)
            answerConnect(c.connectionID, allocation: c.relayAllocation, success: true, now: now)
            // The connection now waits (not read) for its ConnectionBind.
        } else {
            log(.info, "RFC 6062 connect to \(c.fiveTuple.client) failed: \(Errno(rawValue: -cqe.result))")
            // closeStream answers 447 for a connection still marked connecting.
            stream.connections.slots[Int(slot)].connecting = true
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
    func controlConnection(of allocation: AllocationID) -> UInt32? { stream.connection(of: allocation) }

    /// ConnectionBind succeeded on `client` (its response is queued): it and
    /// the peer connection become a pair of data connections.
    mutating func bind(client: UInt32, connectionID: UInt32) {
        guard let peer = stream.connections.peerConnection(connectionID) else {
            closeStream(client, why: "ConnectionBind: the peer connection is gone; closing")
            return
        }
        let c = Int(client)
        let p = Int(peer)
        stream.connections.slots[c].role = .clientData
        stream.connections.slots[c].connectionID = connectionID
        stream.connections.slots[c].relayAllocation = stream.connections.slots[p].relayAllocation
        stream.connections.slots[c].partner = peer
        stream.connections.slots[c].partnerGeneration = stream.connections.slots[p].generation
        stream.connections.slots[p].partner = client
        stream.connections.slots[p].partnerGeneration = stream.connections.slots[c].generation
        // The client's reactor.multishot receive (for STUN) ends; from now on one
        // buffer at a time. What it still delivers is relayed or held.
        if stream.connections.slots[c].receiving && reactor.multishot {
            reactor.submit(.cancel(target: UserData(kind: .streamReceive, slot: client, generation: stream.connections.slots[c].generation)))
        }
        stream.connections.slots[c].needsReceive = true
        stream.connections.slots[p].needsReceive = true
        stream.connections.markDirty(client)
        stream.connections.markDirty(peer)
    }

    // MARK: Peers connecting to a relayed address

    mutating func armRelayAccept(slot: UInt32, generation: UInt32, fd: Int32) {
        let ud = UserData(kind: .relayAccept, slot: slot, generation: generation)
        reactor.submit(.acceptMultishot(socket: fd, userData: ud))
    }

    mutating func relayAcceptCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        guard let relay = datagram.relays.live(slot: ud.slot, generation: ud.generation) else {
            if cqe.result >= 0 { Syscall.close(cqe.result) }
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
        guard let slot = stream.connections.open(fd: fd, fiveTuple: fiveTuple, tls: nil, now: now.seconds) else {
            turn.removeConnection(connectionID)
            socket.close()
            return
        }
        try? socket.setNoDelay()
        counters.add(.streamAccepted)
        stream.connections.slots[Int(slot)].role = .peer
        stream.connections.slots[Int(slot)].relayAllocation = allocation
        stream.connections.slots[Int(slot)].connectionID = connectionID
        streamQueue(control, prefix: nil, prefixLength: 0, bytes: response.baseAddress!, count: n)
    }

    // MARK: Relaying raw bytes

    /// Bytes read on a data connection: straight into the partner's outbox
    /// when it has room and nothing is held, else held in the inbox (and no
    /// receive is armed until it is empty again).
    mutating func rawReceived(_ slot: UInt32, _ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let relayed =
            stream.connections.slots[Int(slot)].inboxCount == 0
            && stream.connections.partner(of: slot).map {
                streamQueue($0, prefix: nil, prefixLength: 0, bytes: base, count: bytes.count, raw: true)
            } == true
        if !relayed {
            guard appendToInbox(slot, bytes) else { return }
        }
        stream.connections.slots[Int(slot)].needsReceive = true
        stream.connections.markDirty(slot)
    }

    /// At the end of a batch: move held bytes to the partner, close a side
    /// whose partner ended once its outbox is sent, and read on when the
    /// partner has room for another buffer.
    mutating func flushDataConnection(_ slot: UInt32) {
        let i = Int(slot)
        guard stream.connections.slots[i].fd >= 0 else { return }
        let partner = stream.connections.partner(of: slot)
        if stream.connections.slots[i].inboxCount > 0, let p = partner, let inbox = stream.connections.slots[i].inbox,
            streamQueue(p, prefix: nil, prefixLength: 0, bytes: inbox, count: stream.connections.slots[i].inboxCount, raw: true)
        {
            stream.connections.slots[i].inboxCount = 0
        }
        if stream.connections.slots[i].closeWhenDrained && stream.connections.slots[i].outboxCount == 0 && stream.connections.slots[i].sending == 0 {
            closeStream(slot, why: nil, quietly: "partner ended, queue sent")
            return
        }
        guard stream.connections.slots[i].needsReceive, !stream.connections.slots[i].receiving, stream.connections.slots[i].inboxCount == 0,
            let p = partner, stream.connections.slots[Int(p)].outboxFree >= reactor.buffers.size(0) + 256
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
        guard c.partner != .max, stream.connections.isOpen(c.partner, generation: c.partnerGeneration) else { return }
        let p = Int(c.partner)
        stream.connections.slots[p].partner = .max
        if stream.connections.slots[p].outboxCount == 0 && stream.connections.slots[p].sending == 0 {
            closeStream(c.partner, why: nil, quietly: "partner ended")
        } else {
            stream.connections.slots[p].closeWhenDrained = true
        }
    }

    /// Closes the peer (and bound client data) connections of allocations
    /// that went away, and those that waited 30 s for a ConnectionBind.
    mutating func closeConnectionsOfRemovedAllocations() {
        while let (connectionID, _) = turn.nextClosedConnection() {
            if let slot = stream.connections.peerConnection(connectionID) { closeStream(slot, why: nil, quietly: "allocation gone") }
        }
    }

    mutating func tcpRelayTick(now: MonotonicTime) {
        while let (connectionID, _) = turn.nextExpiredConnection(now: now) {
            if let slot = stream.connections.peerConnection(connectionID) {
                closeStream(slot, why: "no ConnectionBind for CONNECTION-ID \(connectionID) within 30 s; closing the peer connection")
            }
        }
        closeConnectionsOfRemovedAllocations()
    }

    // MARK: ConnectionBind on another worker

    /// A ConnectionBind whose CONNECTION-ID another worker issued: the
    /// connection (descriptor, TLS session, the request) moves to that
    /// worker, which answers it as if it had read it. SO_REUSEPORT picks the
    /// worker of a new connection by its address, so this is the common case
    /// with several workers. Returns true when it moved.
    mutating func handOffIfForeign(_ slot: UInt32, _ frame: UnsafeRawBufferPointer) -> Bool {
        guard tcpRelay.tagBits > 0, let message = try? STUNMessage(parsing: frame), message.method == .connectionBind,
            message.messageClass == .request, let connectionID = message.connectionID
        else { return false }
        let owner = tcpRelay.owner(of: connectionID)
        guard owner != index, owner < siblings.count else { return false }
        let c = stream.connections.slots[Int(slot)]
        if c.receiving {
            reactor.submit(.cancel(target: UserData(kind: .streamReceive, slot: slot, generation: c.generation)))
            flushSubmissions()  // stop reading here before the owner starts
        }
        log(.info, "connection \(c.fiveTuple.client): ConnectionBind for CONNECTION-ID \(connectionID) goes to worker \(owner), which issued it")
        stream.connections.slots[Int(slot)].handingOff = true
        tcpRelay.pendingHandoffs.append((slot, owner, Array(frame)))
        // A send in flight finishes here first (its bytes come before
        // anything the owner sends); then the rest of the queue moves along.
        if c.sending == 0 { finishHandoff(slot) }
        return true
    }

    /// Moves a connection marked `handingOff` whose last send completed.
    mutating func finishHandoff(_ slot: UInt32) {
        guard let k = tcpRelay.pendingHandoffs.firstIndex(where: { $0.slot == slot }) else { return }
        let (_, owner, request) = tcpRelay.pendingHandoffs.remove(at: k)
        let c = stream.connections.slots[Int(slot)]
        var unsent = [UInt8]()
        if let out = c.outbox, c.outboxCount > 0 {
            unsent.reserveCapacity(c.outboxCount)
            let first = min(c.outboxCount, c.outboxCapacity - c.outboxHead)
            unsent += UnsafeRawBufferPointer(start: out + c.outboxHead, count: first)
            unsent += UnsafeRawBufferPointer(start: out, count: c.outboxCount - first)
        }
        let handoff = StreamHandoff(fd: c.fd, fiveTuple: c.fiveTuple, tls: c.tls, request: request, unsent: unsent)
        if siblings[owner].send(.handoff(handoff)) {
            stream.connections.markHandedOff(slot)
        } else {
            stream.connections.slots[Int(slot)].handingOff = false
            closeStream(slot, why: "ConnectionBind: worker \(owner)'s inbox is full; closing")
        }
    }

    /// Takes a connection another worker handed over and answers its ConnectionBind.
    mutating func takeHandoff(_ h: StreamHandoff, now: MonotonicTime) {
        guard let slot = stream.connections.open(fd: h.fd, fiveTuple: h.fiveTuple, tls: h.tls, now: now.seconds) else {
            var tls = h.tls
            tls?.free()
            Syscall.close(h.fd)
            return
        }
        if !h.unsent.isEmpty {
            h.unsent.withUnsafeBytes { u in
                stream.connections.slots[Int(slot)].append(u.baseAddress!, count: min(u.count, stream.connections.slots[Int(slot)].outboxFree))
            }
            stream.connections.markDirty(slot)
        }
        h.request.withUnsafeBytes { r in
            _ = appendToInbox(slot, r)
        }
        processInbox(slot, now: now)
        if stream.connections.slots[Int(slot)].fd >= 0 && stream.connections.slots[Int(slot)].role == .client {
            stream.connections.slots[Int(slot)].needsReceive = true
            stream.connections.markDirty(slot)
        }
    }
}
