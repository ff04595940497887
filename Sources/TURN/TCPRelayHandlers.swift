import STUN

// TURN TCP allocations (RFC 6062), the state-machine half: the engine owns
// the sockets and calls in here at each step.
//
// Client-initiated (RFC 6062 §4.3, §5.2):
//   1. Connect on the control connection → `handleSTUN` answers nothing yet
//      and returns the effect `.tcpRelay(.connectToPeer(id, peer, connectionID))`.
//   2. The engine connects the relay to the peer (timeout ≥ 30 s), then calls
//      `connectCompleted(connectionID:success:now:into:)` and sends what it
//      wrote on the returned control 5-tuple (success with CONNECTION-ID, or 447).
//   3. The client opens a new connection and sends ConnectionBind →
//      `handleSTUN` answers with the effect `.tcpRelay(.bindConnection(...))`; the
//      engine splices the two connections.
// Peer-initiated (RFC 6062 §4.4, §5.3):
//   1. The engine accepts on the relay listener and calls
//      `peerConnectionArrived(allocation:peer:now:into:)`: nil → close the peer
//      connection; else send the ConnectionAttempt it wrote on the control 5-tuple.
//   2. ConnectionBind as above.
// Either way: `nextExpiredConnection(now:)` each tick (no bind within 30 s →
// close the peer connection), `removeConnection(_:)` when either side of a
// connection closes, and `nextClosedConnection()` after anything that
// removes an allocation (its connections go with it).

extension TURNServer {
    // MARK: Requests

    /// Connect (RFC 6062 §5.2), from the control connection of `id`.
    ///
    /// Permissions: §5.2 neither asks for one nor installs one, so none is
    /// checked or made here; peers the client connects to are vetted by the
    /// peer policy (403) like CreatePermission's. Incoming connections
    /// (§5.3) do need a permission, which CreatePermission installs.
    mutating func handleConnect(
        _ request: STUNMessage, id: AllocationID, auth: AuthContext, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        func fail(_ code: Int) -> STUNOutcome {
            STUNOutcome(responseLength: errorResponse(code, to: request, auth: auth, into: out), effect: .none)
        }
        // A UDP allocation has no TCP relay to connect from. §5.2 names 437
        // only for "no allocation"; this one exists but cannot carry the
        // request, so it is a bad request.
        guard tables.relayTransport(of: id) == .tcp else { return fail(400) }
        // "If the request does not contain an XOR-PEER-ADDRESS attribute, or if
        // such attribute is invalid": port 0 cannot be connected to.
        guard let peer = request.xorPeerAddress, peer.port != 0 else { return fail(400) }
        guard hasRelay(id, family: peer.ip.family) else { return fail(443) }
        guard configuration.peerPolicy.denial(forPeer: peer) == nil else { return fail(403) }
        // Being made, awaiting its bind or bound: all count (§5.2).
        guard !connections.hasConnection(to: peer, in: id) else { return fail(446) }
        let pending = PendingConnect(
            transactionID: request.transactionID, key: auth.key, sha256: auth.sha256,
            fingerprint: request.contains(.fingerprint))
        guard
            let (_, connectionID) = connections.insert(
                allocation: id, peer: peer, phase: .connecting, pending: pending)
        else { return fail(508) }
        return STUNOutcome(
            responseLength: 0, effect: .tcpRelay(.connectToPeer(id, peer: peer, connectionID: connectionID)))
    }

    /// ConnectionBind (RFC 6062 §5.4), on a new client connection that has
    /// no allocation. Authenticated like every other request (the nonce is
    /// bound to the new connection's address, so a client reusing the control
    /// connection's nonce gets 438 and a fresh one first).
    mutating func handleConnectionBind(
        _ request: STUNMessage, auth: AuthContext, from fiveTuple: FiveTuple, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        func fail(_ code: Int) -> STUNOutcome {
            STUNOutcome(responseLength: errorResponse(code, to: request, auth: auth, into: out), effect: .none)
        }
        // "If the client connection transport is not TCP or TLS, ... 400."
        guard fiveTuple.transport == .tcp || fiveTuple.transport == .tls else { return fail(400) }
        // The control connection cannot become a data connection: its
        // allocation would lose its only way to talk to the client.
        guard tables.allocation(for: fiveTuple) == nil else { return fail(400) }
        // "If the request does not contain the CONNECTION-ID attribute, or if
        // this attribute does not refer to an existing pending connection, ... 400":
        // unknown, being connected, already bound, or past its 30 s.
        guard let connectionID = request.connectionID, let i = connections.index(of: connectionID),
            connections.entries[i].phase == .awaitingBind, connections.entries[i].deadline > now.seconds
        else { return fail(400) }
        let entry = connections.entries[i]
        guard tables.isLive(entry.allocation) else { return fail(400) }
        // §5.4 says nothing of who may bind; only the allocation's owner may
        // (RFC 8656 §4's 441: credentials other than the allocation's).
        guard owners[Int(entry.allocation.slot)].username == auth.username else { return fail(441) }
        connections.markBound(i)
        let n = successResponse(to: request, auth: auth, into: out)
        return STUNOutcome(
            responseLength: n,
            effect: .tcpRelay(.bindConnection(connectionID: connectionID, allocation: entry.allocation, peer: entry.peer)))
    }

    // MARK: Engine calls

    /// The engine's connection to the peer of a Connect (`.connectToPeer`)
    /// succeeded or failed (refused, unreachable, or 30 s or more passed).
    /// Writes the Connect response to `out`, signed like the request: success
    /// with CONNECTION-ID (the connection then waits 30 s for ConnectionBind),
    /// or 447 (the connection is forgotten). Send it on `control`.
    ///
    /// Nil when `connectionID` is not a connection being made (its allocation
    /// went away meanwhile, and `nextClosedConnection()` reported it) or the
    /// response did not fit `out` (548 bytes always does): close the peer
    /// connection and send nothing.
    public mutating func connectCompleted(
        connectionID: UInt32, success: Bool, now: MonotonicTime, into out: UnsafeMutableRawBufferPointer
    ) -> (responseLength: Int, control: FiveTuple)? {
        guard let i = connections.index(of: connectionID), connections.entries[i].phase == .connecting,
            let pending = connections.entries[i].pending,
            let control = tables.fiveTuple(of: connections.entries[i].allocation)
        else { return nil }
        if success {
            let n = laterResponse(.connect, error: nil, pending: pending, into: out) { (enc) throws(STUNError) in
                try enc.appendConnectionID(connectionID)
            }
            guard n > 0 else {
                connections.remove(i)
                return nil
            }
            connections.awaitBind(i, now: now)
            return (n, control)
        }
        connections.remove(i)
        let n = laterResponse(.connect, error: 447, pending: pending, into: out)
        return n > 0 ? (n, control) : nil
    }

    /// A peer connected to the relayed transport address of `allocation`
    /// (RFC 6062 §5.3; the engine has accepted it). Nil: no permission for
    /// the peer's IP, the peer is denied by policy, the allocation is gone or
    /// not TCP, or no room for another connection: close the peer connection
    /// at once. Otherwise the connection waits 30 s for ConnectionBind and a
    /// ConnectionAttempt indication (XOR-PEER-ADDRESS, CONNECTION-ID) is in
    /// `out` for the control connection `control`.
    public mutating func peerConnectionArrived(
        allocation id: AllocationID, peer: TransportAddress, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> (connectionID: UInt32, indicationLength: Int, control: FiveTuple)? {
        guard tables.relayTransport(of: id) == .tcp, let control = tables.fiveTuple(of: id),
            tables.isPermitted(peer.ip, in: id, now: now), configuration.peerPolicy.isAllowed(peer.ip),
            let (i, connectionID) = connections.insert(allocation: id, peer: peer, phase: .connecting, pending: nil)
        else { return nil }
        let n: Int
        do throws(STUNError) {
            var enc = try STUNEncoder(
                into: out, method: .connectionAttempt, class: .indication, transactionID: .random())
            try enc.append(.xorPeerAddress, xorAddress: peer)
            try enc.appendConnectionID(connectionID)
            n = enc.count
        } catch {
            connections.remove(i)
            return nil
        }
        connections.awaitBind(i, now: now)
        return (connectionID, n, control)
    }

    /// One connection that got no ConnectionBind within 30 s (RFC 6062 §5.2,
    /// §5.3), already forgotten: close its peer connection. Call until nil on
    /// each tick.
    public mutating func nextExpiredConnection(now: MonotonicTime)
        -> (connectionID: UInt32, allocation: AllocationID)?
    {
        connections.popExpired(now: now)
    }

    /// Forgets a connection whose client or peer side closed (or that the
    /// engine gave up on). Any state; unknown IDs are ignored. A connection
    /// still being made should rather go through `connectCompleted(success:
    /// false)`, so the client gets its 447.
    public mutating func removeConnection(_ connectionID: UInt32) {
        guard let i = connections.byID.get(ConnectionIDKey(id: connectionID)) else { return }
        connections.remove(Int(i))
    }

    /// One connection whose allocation was removed (expiry, Refresh with
    /// LIFETIME 0, `removeAllocation`), now forgotten: close its sockets (and
    /// cancel its connect if one is in flight). Call until nil after
    /// `nextExpired`, `removeAllocation` or a `.allocationDeleted` effect, or
    /// simply once per tick. Until collected, such a connection keeps its ID
    /// and its room in the table (so nothing can overflow), and every other
    /// call treats it as unknown.
    public mutating func nextClosedConnection() -> (connectionID: UInt32, allocation: AllocationID)? {
        connections.popClosed()
    }

    /// A connection's allocation, peer and state; nil when unknown or closed.
    public func connection(_ connectionID: UInt32) -> ConnectionInfo? { connections.info(connectionID) }

    /// Connections held, closed ones not yet collected included.
    public var connectionCount: Int { connections.count }

    /// Puts `tag` in the top `bits` bits (0...16) of every CONNECTION-ID this
    /// server issues from now on, the rest staying random. A ConnectionBind
    /// arrives on a new TCP connection, which SO_REUSEPORT may hand to another
    /// worker: with its worker number as the tag, any worker can read the
    /// CONNECTION-ID and pass the request to the worker that owns it.
    public mutating func setConnectionIDTag(_ tag: UInt32, bits: Int) {
        precondition((0...16).contains(bits) && tag >> bits == 0, "the tag does not fit in its bits")
        connections.tag = tag
        connections.tagBits = bits
    }

    // MARK: Helpers

    /// A response to a request answered later, from what was kept of it.
    func laterResponse(
        _ method: STUNMethod, error code: Int?, pending: PendingConnect, into out: UnsafeMutableRawBufferPointer,
        body: (inout STUNEncoder) throws(STUNError) -> Void = { _ in }
    ) -> Int {
        do throws(STUNError) {
            var enc = try STUNEncoder(
                into: out, method: method, class: code == nil ? .successResponse : .errorResponse,
                transactionID: pending.transactionID)
            if let code { try enc.appendErrorCode(code, reason: reasonPhrase(code)) }
            try body(&enc)
            return try finish(&enc, key: pending.key, sha256: pending.sha256, fingerprint: pending.fingerprint)
        } catch {
            return 0
        }
    }
}
