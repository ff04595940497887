import Glibc
import STUN
import TURN
import URing

// RFC 6062 TCP relaying. A TCP allocation has a listener on its relayed
// address (RelaySockets.openTCPRelay). Connect makes the worker connect to
// the peer from that address; a peer connecting to it is announced with a
// ConnectionAttempt. Either way the peer connection is the peer side of a
// data pair (DataPairs.swift) and waits for the client's ConnectionBind on a
// new connection, which becomes the pair's client side: raw bytes relayed
// both ways with back-pressure (no receive is armed on one side while the
// other cannot take a buffer's worth; StreamPart does the bytes), and under
// the allocation's traffic limits (not read while its byte bucket for that
// direction is empty: Stream/Worker+Pause.swift). The TURN
// state machine keeps the connection IDs, permissions and the 30 s bind
// timer; this file joins it to the sockets.
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
        guard let slot = stream.openPeerConnection(fd: socket.rawValue, fiveTuple: fiveTuple, now: now) else {
            socket.close()
            return fail("no room for another connection on this worker (--tcp-connections)")
        }
        let generation = stream[slot].generation
        guard
            let pair = tcpRelay.pairs.open(
                connectionID: connectionID, allocation: allocation, peer: slot, peerGeneration: generation,
                connecting: true, now: now.seconds)
        else {
            stream.close(slot, why: nil, quietly: "no data pair left")
            return fail("no room for another connection on this worker (--tcp-connections)")
        }
        stream.setPair(slot, pair)
        // The kernel reads the address until the CQE: it lives in the table.
        let address = stream.connectAddress(slot)
        let length = peer.store(sockaddr: UnsafeMutableRawPointer(address))
        let target = UnsafeRawPointer(address).assumingMemoryBound(to: sockaddr.self)
        let ud = UserData(kind: .streamConnect, slot: slot, generation: generation)
        reactor.submit(.connect(socket: socket.rawValue, address: target, length: length, userData: ud))
    }

    mutating func connectCompleted(_ cqe: Completion, now: MonotonicTime) {
        let slot = cqe.userData.slot
        guard stream.isOpen(slot, generation: cqe.userData.generation) else { return }
        let p = stream[slot].pair
        guard p != .max, tcpRelay.pairs[p].connecting else { return }
        tcpRelay.pairs[p].connecting = false
        let pair = tcpRelay.pairs[p]
        if cqe.result == 0 {
            counters.add(.streamAccepted)
            answerConnect(pair.connectionID, allocation: pair.allocation, success: true, now: now)
            // The connection now waits (not read) for its ConnectionBind.
        } else {
            log(.info, "RFC 6062 connect to \(stream[slot].fiveTuple.client) failed: \(Errno(rawValue: -cqe.result))")
            // Closing a pair still connecting answers 447.
            tcpRelay.pairs[p].connecting = true
            closeStream(slot, why: nil, quietly: "connect failed")
        }
    }

    /// Sends the Connect response (success with CONNECTION-ID, or 447) on the
    /// allocation's control connection.
    mutating func answerConnect(_ connectionID: UInt32, allocation: AllocationID, success: Bool, now: MonotonicTime) {
        guard let (n, _) = turn.connectCompleted(connectionID: connectionID, success: success, now: now, into: response)
        else { return }
        if let control = stream.connection(of: allocation) {
            stream.queue(control, prefix: nil, prefixLength: 0, bytes: response.baseAddress!, count: n)
        }
    }

    /// ConnectionBind succeeded on `client` (its response is queued): it
    /// becomes the client side of the pair waiting with that CONNECTION-ID.
    mutating func bind(client: UInt32, connectionID: UInt32) {
        guard let p = tcpRelay.pairs.find(connectionID, where: { $0.client == .max }),
            stream.isOpen(tcpRelay.pairs[p].peer, generation: tcpRelay.pairs[p].peerGeneration)
        else {
            closeStream(client, why: "ConnectionBind: the peer connection is gone; closing")
            return
        }
        tcpRelay.pairs[p].client = client
        tcpRelay.pairs[p].clientGeneration = stream[client].generation
        // What the client connection still delivers is relayed or held.
        stream.becomeDataConnection(client, pair: p, &reactor)
        stream.wantReceive(tcpRelay.pairs[p].peer)
    }

    /// The open other side of `slot`'s data pair, if it has one.
    @inline(__always)
    func partner(of slot: UInt32) -> UInt32? {
        let p = stream[slot].pair
        guard p != .max, let other = tcpRelay.pairs[p].otherSide(of: slot),
            stream.isOpen(other.slot, generation: other.generation)
        else { return nil }
        return other.slot
    }

    // MARK: Peers connecting to a relayed address

    mutating func relayAcceptCompleted(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        guard let relay = datagram.relays.live(slot: ud.slot, generation: ud.generation) else {
            if cqe.result >= 0 { Syscall.close(cqe.result) }
            return
        }
        if cqe.result >= 0 { peerConnected(fd: cqe.result, allocation: relay.allocation, now: now) }
        if !cqe.hasMore && cqe.result != -ECANCELED {
            reactor.submit(.acceptMultishot(socket: relay.fd, userData: ud))
        }
        handleStreamEvents(now: now)
    }

    mutating func peerConnected(fd: Int32, allocation: AllocationID, now: MonotonicTime) {
        let socket = StreamSocket(rawValue: fd)
        guard let peerAddress = try? socket.peerAddress(), let localAddress = try? socket.localAddress() else {
            socket.close()
            return
        }
        let peer = TransportAddress(peerAddress)
        guard let control = stream.connection(of: allocation),
            let (connectionID, n, _) = turn.peerConnectionArrived(
                allocation: allocation, peer: peer, now: now, into: response)
        else {
            // No permission for that peer (or no room): refused, as RFC 6062 §5.3 says.
            socket.close()
            return
        }
        let fiveTuple = FiveTuple(client: peer, server: TransportAddress(localAddress), transport: .tcp)
        guard let slot = stream.openPeerConnection(fd: fd, fiveTuple: fiveTuple, now: now) else {
            turn.removeConnection(connectionID)
            socket.close()
            return
        }
        guard
            let pair = tcpRelay.pairs.open(
                connectionID: connectionID, allocation: allocation, peer: slot, peerGeneration: stream[slot].generation,
                connecting: false, now: now.seconds)
        else {
            turn.removeConnection(connectionID)
            stream.close(slot, why: nil, quietly: "no data pair left")
            return
        }
        counters.add(.streamAccepted)
        stream.setPair(slot, pair)
        stream.queue(control, prefix: nil, prefixLength: 0, bytes: response.baseAddress!, count: n)
    }

    // MARK: Ends

    /// A side of a data pair closed: the TURN state forgets the connection
    /// (a CONNECT in flight answers 447), the pair ends, and the other side
    /// closes once it has sent what it holds.
    mutating func dataConnectionClosed(_ c: StreamPart.ClosedConnection, now: MonotonicTime) {
        let pair = tcpRelay.pairs[c.pair]
        guard pair.inUse else { return }
        if pair.connecting {
            answerConnect(pair.connectionID, allocation: pair.allocation, success: false, now: now)
        } else {
            turn.removeConnection(pair.connectionID)
        }
        if let other = pair.otherSide(of: c.slot), stream.isOpen(other.slot, generation: other.generation) {
            stream.partnerEnded(other.slot)
        }
        tcpRelay.pairs.remove(c.pair)
    }

    /// Closes the peer connections (and their bound client sides) of
    /// allocations that went away, and those whose ConnectionBind did not
    /// come within 30 s.
    mutating func closeConnectionsOfRemovedAllocations() {
        while let (connectionID, _) = turn.nextClosedConnection() {
            if let slot = peerConnection(connectionID) { stream.close(slot, why: nil, quietly: "allocation gone") }
        }
        handleStreamEvents(now: Self.monotonicNow())
    }

    /// The open peer connection of the pair with this CONNECTION-ID (a linear walk: the control path).
    func peerConnection(_ connectionID: UInt32) -> UInt32? {
        let p = tcpRelay.pairs.find(connectionID) { stream.isOpen($0.peer, generation: $0.peerGeneration) }
        return p.map { tcpRelay.pairs[$0].peer }
    }

    mutating func tcpRelayTick(now: MonotonicTime) {
        while let (connectionID, _) = turn.nextExpiredConnection(now: now) {
            if let slot = peerConnection(connectionID) {
                stream.close(
                    slot, why: "no ConnectionBind for CONNECTION-ID \(connectionID) within 30 s; closing the peer connection")
            }
        }
        // A CONNECT that hangs is cancelled; its completion then closes the pair (447).
        let t = now.seconds
        for i in 0..<tcpRelay.pairs.capacity {
            let pair = tcpRelay.pairs[UInt32(i)]
            if pair.inUse && pair.connecting && t &- pair.since >= UInt32(TCPRelayPart.connectTimeoutSeconds) {
                reactor.submit(.cancel(target: UserData(kind: .streamConnect, slot: pair.peer, generation: pair.peerGeneration)))
            }
        }
        closeConnectionsOfRemovedAllocations()
    }

    // MARK: ConnectionBind on another worker

    /// A ConnectionBind whose CONNECTION-ID another worker issued: the
    /// connection (descriptor, TLS session, the request) moves to that
    /// worker, which answers it as if it had read it. SO_REUSEPORT picks the
    /// worker of a new connection by its address, so this is the common case
    /// with several workers. Returns true when it moved (or is moving).
    mutating func handOffIfForeign(_ slot: UInt32, _ frame: UnsafeRawBufferPointer) -> Bool {
        guard tcpRelay.tagBits > 0, let message = try? STUNMessage(parsing: frame), message.method == .connectionBind,
            message.messageClass == .request, let connectionID = message.connectionID
        else { return false }
        let owner = tcpRelay.owner(of: connectionID)
        guard owner != index, owner < siblings.count else { return false }
        log(.info, "connection \(stream[slot].fiveTuple.client): ConnectionBind for CONNECTION-ID \(connectionID) goes to worker \(owner), which issued it")
        tcpRelay.pendingHandoffs.append((slot, owner, Array(frame)))
        // A send in flight finishes here first (its bytes come before
        // anything the owner sends); then the rest of the queue moves along.
        if stream.beginHandOff(slot, &reactor) { finishHandoff(slot) }
        return true
    }

    /// Moves a connection marked for hand-off whose last send completed.
    mutating func finishHandoff(_ slot: UInt32) {
        guard let k = tcpRelay.pendingHandoffs.firstIndex(where: { $0.slot == slot }) else { return }
        let (_, owner, request) = tcpRelay.pendingHandoffs.remove(at: k)
        let handoff = stream.takeForHandOff(slot, request: request)
        guard siblings[owner].send(.handoff(handoff)) else {
            // The connection is no longer in the table: end it here.
            log(.warning, "connection \(handoff.fiveTuple.client): worker \(owner)'s inbox is full; closing")
            var tls = handoff.tls
            tls?.free()
            Syscall.shutdownBoth(handoff.fd)
            Syscall.close(handoff.fd)
            return
        }
    }

    /// Takes a connection another worker handed over and answers its ConnectionBind.
    mutating func takeHandoff(_ h: StreamHandoff, now: MonotonicTime) {
        guard let slot = stream.adopt(h, now: now) else {
            var tls = h.tls
            tls?.free()
            Syscall.close(h.fd)
            return
        }
        routeFrames(slot, now: now)
        if stream[slot].fd >= 0 && stream[slot].role == .client { stream.wantReceive(slot) }
        handleStreamEvents(now: now)
    }
}
