import STUN

/// What the engine must do after a STUN packet besides sending the response.
public enum ServerEffect: Sendable, Equatable {
    case none
    /// An allocation was made: register its relay socket(s) under `id`.
    case allocationCreated(AllocationID, relayV4: RelayEndpoint?, relayV6: RelayEndpoint?)
    /// RFC 8016: a Refresh with the allocation's mobility ticket moved `id`
    /// from the client 5-tuple `from` to the one the Refresh came from
    /// (relays, permissions and channels kept): redo what was keyed by the
    /// old 5-tuple (kernel fast-path routes).
    case allocationMoved(AllocationID, from: FiveTuple)
    /// An allocation was deleted (Refresh LIFETIME 0): close its relay sockets.
    /// The relays were already closed through the provider; this is for the engine's tables.
    case allocationDeleted(RemovedAllocation)
    /// A Send indication: send the bytes `payload` (a range of the incoming
    /// packet) to `peer` from the relay socket of `id`, with DF if asked.
    case sendToPeer(AllocationID, peer: TransportAddress, payload: Range<Int>, dontFragment: Bool)
    /// Dropped without an answer.
    case dropped(DropReason)
    /// RFC 6062: a Connect or ConnectionBind that succeeded (see `TCPRelayEffect`).
    case tcpRelay(TCPRelayEffect)
    /// RFC 8016 across workers: a Refresh with a valid mobility ticket of an
    /// allocation another worker owns came to this one (the kernel hashed
    /// the client's new 5-tuple here). No answer: the engine hands the
    /// request to worker `toWorker`, which checks and moves (or refuses) it.
    case forwardMove(toWorker: UInt16)
}

/// What the engine must do for an RFC 6062 request besides sending the
/// response (`ServerEffect.tcpRelay`); with `TURNConfiguration.tcpRelay`
/// off there is none.
public enum TCPRelayEffect: Sendable, Equatable {
    /// Connect accepted (RFC 6062 §5.2), no response yet: open a TCP
    /// connection from the relayed transport address of `id` to `peer`, give
    /// up after 30 s or more, then call `TURNServer.connectCompleted` with
    /// `connectionID`, which writes the Connect response for the control
    /// connection.
    case connectToPeer(AllocationID, peer: TransportAddress, connectionID: UInt32)
    /// ConnectionBind accepted (RFC 6062 §5.4): send the success response on
    /// the connection the request came in on, then stop reading STUN from it
    /// and relay bytes as they are between it and the peer data connection
    /// `connectionID` (including what the peer sent before the bind).
    case bindConnection(connectionID: UInt32, allocation: AllocationID, peer: TransportAddress)
}

/// Why a packet got no answer. For counters and debug logs.
public enum DropReason: UInt8, Sendable, Equatable {
    case malformed
    case notARequest
    case noAllocation
    case noPermission
    case peerFamilyMismatch
    case missingAttribute
    case bandwidthExceeded
    case responseBufferTooSmall
    /// A Send indication on a TCP allocation (RFC 6062): it has no UDP relay.
    case notUDPRelay
    /// A request for a service that is turned off: Binding under
    /// `--no-stun`, TURN requests and Send indications under `--stun-only`.
    case serviceOff
    /// Over `--failed-request-rate` (or its worker total): a request with no
    /// credentials, or one that would get 400, from a source that has used
    /// up its refusals.
    case rateLimitedUnauthenticated
    /// Over the refusal limit with MESSAGE-INTEGRITY: dropped before the HMAC check.
    case rateLimitedCredentials
    /// Over the refusal limit: a broken request that would have got 400.
    case rateLimitedMalformed
    /// Over `--binding-request-rate`.
    case rateLimitedBinding
}

/// The answer to one STUN packet.
public struct STUNOutcome: Sendable, Equatable {
    /// Bytes of response written to the caller's buffer; 0 for none.
    public var responseLength: Int
    public var effect: ServerEffect
    /// RFC 5780: the local address the response must be sent from (CHANGE-REQUEST), when not the one the request came in on.
    public var responseSource: TransportAddress? = nil
    /// RFC 5780: where the response goes (RESPONSE-PORT), when not the client's address.
    public var responseDestination: TransportAddress? = nil

    /// The RFC 6062 effect, set only for Connect and ConnectionBind requests that succeeded.
    public var tcpRelay: TCPRelayEffect? {
        if case .tcpRelay(let e) = effect { return e }
        return nil
    }
}

/// Where data from a peer goes (RFC 8656 §11.5, §12.5).
public enum PeerRoute: Sendable, Equatable {
    /// Frame as ChannelData with this number and send to the client.
    case channel(UInt16, client: FiveTuple)
    /// Wrap in a Data indication and send to the client.
    case dataIndication(client: FiveTuple)
    /// No permission for the peer (or the allocation is gone): drop silently.
    case drop
}

/// One worker's TURN state machine: it decides everything about STUN
/// requests and answers the per-packet questions of the data path.
///
/// Ownership: one instance per worker, used only from that worker's thread.
/// Shared between workers: the `TURNConfiguration` snapshot (a value) and
/// the `AllocationQuotas` counters (a Sendable class, control path only).
///
/// The data-path methods (`allocation(for:)`, `routeChannelData`,
/// `routePeerData`, counters, bandwidth) touch only the tables' unsafe
/// storage: no allocation, no reference counting. `handleSTUN` is the
/// control path; it may allocate a String for the username.
public struct TURNServer: ~Copyable {
    /// The configuration in force; assign a new snapshot to reload.
    /// Table sizes (`limits`) are read only at init.
    public var configuration: TURNConfiguration
    public let quotas: AllocationQuotas
    public var tables: AllocationTable
    var cache: ResponseCache
    /// RFC 6062 peer data connections of the TCP allocations.
    var connections: ConnectionTable
    /// Username and quota user per slot (cold; control path only).
    var owners: [Owner]
    /// Per-source request limits for clients with no allocation.
    var sourceLimiter: SourceRateLimiter
    /// Keeps the buckets `sourceLimiter` points into alive.
    let sourceBuckets: SourceBuckets
    /// Whether the server drains (SIGTERM): set by the engine; the
    /// alternate-server policy `draining` redirects only then.
    public var draining = false
    /// Round-robin position among the alternate servers.
    var alternateTurn = 0
    /// Allocations that carried traffic in the last second, server-wide, as
    /// of this worker's last `updateRates`; and this worker's part of it.
    var serverActive = 0
    var publishedActive = 0

    struct Owner {
        var username: String
        var quotaUser: String
        /// The canonical ORIGIN of the Allocate ("" for none), for `--check-origin-consistency`.
        var origin = ""
        /// Monotonic seconds when the Allocate succeeded (the admin API's age).
        var createdAt: UInt32 = 0
        /// RFC 8016: the client asked for mobility and got tickets.
        var mobile = false
        /// The counter of the newest mobility ticket given out (only it moves the allocation).
        var ticketCounter: UInt32 = 0
    }
    /// This worker's number, written into mobility tickets (`setWorkerIndex`).
    var workerIndex: UInt16 = 0
    /// How many workers there are (tickets naming another one are handed there).
    var workerCount: UInt16 = 1
    /// Set by the engine only while it handles a Refresh another worker
    /// handed over (`ServerEffect.forwardMove`): whether it could open the
    /// client-facing socket such a move needs. False refuses the move with
    /// 508 before anything changes; nil for every other request.
    public var crossWorkerMoveSocket: Bool? = nil

    /// `sources`: the per-source request buckets shared by every worker of
    /// the engine (nil: a table of this server's own, as in tests).
    public init(
        configuration: TURNConfiguration, quotas: AllocationQuotas, sources: SourceBuckets? = nil,
        now: MonotonicTime
    ) {
        self.configuration = configuration
        self.quotas = quotas
        self.tables = AllocationTable(
            limits: configuration.limits, maxLifetime: configuration.maxLifetime,
            rateLimits: configuration.rateLimits, now: now)
        self.cache = ResponseCache(capacity: 1024)
        self.connections = ConnectionTable(limits: configuration.limits, now: now)
        self.owners = Array(repeating: Owner(username: "", quotaUser: ""), count: configuration.limits.maxAllocations)
        let sources = sources ?? SourceBuckets()
        self.sourceBuckets = sources
        self.sourceLimiter = SourceRateLimiter(limits: configuration.sourceLimits, buckets: sources.view, now: now)
    }

    // MARK: Data path

    /// The allocation of a client 5-tuple.
    @inline(__always)
    public func allocation(for fiveTuple: FiveTuple) -> AllocationID? { tables.allocation(for: fiveTuple) }

    /// Client → peer ChannelData: the allocation and the peer to send the
    /// payload to, or nil to drop (no allocation, channel unbound or expired,
    /// permission expired).
    @inline(__always)
    public func routeChannelData(channel: UInt16, from fiveTuple: FiveTuple, now: MonotonicTime)
        -> (AllocationID, TransportAddress)?
    {
        guard let id = tables.allocation(for: fiveTuple),
            let peer = tables.peer(forChannel: channel, in: id, now: now)
        else { return nil }
        return (id, peer)
    }

    /// Peer → client: checks the permission, then picks ChannelData if a
    /// channel is bound to the peer, else a Data indication.
    @inline(__always)
    public func routePeerData(to id: AllocationID, from peer: TransportAddress, now: MonotonicTime) -> PeerRoute {
        guard let client = tables.fiveTuple(of: id), tables.isPermitted(peer.ip, in: id, now: now) else { return .drop }
        if let number = tables.channel(forPeer: peer, in: id, now: now) { return .channel(number, client: client) }
        return .dataIndication(client: client)
    }

    // MARK: What the engine asks of the tables

    /// Admits `bytes` of client data for a peer under the allocation's
    /// traffic limits and counts them; anything but `.pass` means drop, for
    /// the reason given.
    @inline(__always)
    public mutating func admitToPeer(_ id: AllocationID, bytes: Int, now: MonotonicTime) -> Admission {
        let a = tables.admit(id, bytes: bytes, toPeer: true, now: now)
        if a == .pass { tables.countToPeer(id, bytes: bytes) }
        return a
    }

    /// Admits `bytes` of peer data for the client under the allocation's
    /// traffic limits (counted by `countToClient` once queued).
    @inline(__always)
    public mutating func admitToClient(_ id: AllocationID, bytes: Int, now: MonotonicTime) -> Admission {
        tables.admit(id, bytes: bytes, toPeer: false, now: now)
    }

    /// Client data for a peer read from a TCP or TLS client connection: it
    /// is never dropped for the byte rate (it was read; the connection is
    /// paused instead), only for `--max-pps`. Returns whether it may pass
    /// (false: over `--max-pps`, counted) and whether the connection may go
    /// on reading (false: pause it, the bucket is empty).
    @inline(__always)
    public mutating func chargeStreamToPeer(_ id: AllocationID, bytes: Int, now: MonotonicTime) -> (pass: Bool, keepReading: Bool) {
        guard tables.admitPacket(id, now: now) else { return (false, true) }
        let more = tables.charge(id, bytes: bytes, toPeer: true, now: now)
        tables.countToPeer(id, bytes: bytes)
        return (true, more)
    }

    /// Counts `bytes` of peer data relayed to the allocation's client.
    @inline(__always)
    public mutating func countToClient(_ id: AllocationID, bytes: Int) { tables.countToClient(id, bytes: bytes) }

    /// The allocation's relayed endpoint for peers of `family`, if it has one.
    @inline(__always)
    public func relayEndpoint(of id: AllocationID, family: IPAddress.Family) -> RelayEndpoint? {
        guard let r = tables.relays(of: id) else { return nil }
        return family == .v4 ? r.v4 : r.v6
    }

    /// Whether `id` names a live allocation made over `fiveTuple`.
    public func isAllocation(_ id: AllocationID, of fiveTuple: FiveTuple) -> Bool {
        tables.isLive(id) && tables.fiveTuple(of: id) == fiveTuple
    }

    /// Whether `id` names a live allocation.
    public func isLive(_ id: AllocationID) -> Bool { tables.isLive(id) }

    /// Live allocations.
    public var allocationCount: Int { tables.count }

    /// Puts a reloaded configuration (users, secrets, peer policy) in force,
    /// keeping the table sizes fixed at start and every allocation. New
    /// values of the traffic limits apply at once when the same limits stay
    /// on (`RateLimits.canReload`); a reload that would turn one on or off
    /// keeps those of the start.
    public mutating func reconfigure(_ new: TURNConfiguration) {
        var next = new
        next.limits = configuration.limits
        // Tickets already given out must keep working after a reload.
        next.mobilityTickets = configuration.mobilityTickets
        let rates = configuration.rateLimits.canReload(to: new.rateLimits) ? new.rateLimits : configuration.rateLimits
        next.rateLimits = rates
        let ratesChanged = rates != configuration.rateLimits
        configuration = next
        sourceLimiter.reconfigure(next.sourceLimits)
        if ratesChanged { applyRateLimits(rates) }
    }

    /// The username an allocation authenticated with (control path; for logs).
    public func username(of id: AllocationID) -> String? {
        guard tables.isLive(id) else { return nil }
        return owners[Int(id.slot)].username
    }

    // MARK: Timers

    /// One allocation whose lifetime has run out, already removed, with its
    /// quota given back; the engine closes its relays. Call until nil on each tick.
    /// A TCP allocation's peer data connections are closed with it: collect
    /// their IDs with `nextClosedConnection()`.
    public mutating func nextExpired(now: MonotonicTime) -> RemovedAllocation? {
        guard var removed = tables.nextExpired(now: now) else { return nil }
        quotas.release(user: owners[Int(removed.id.slot)].quotaUser)
        removed.username = owners[Int(removed.id.slot)].username
        connections.closeAll(slot: removed.id.slot)
        return removed
    }

    /// Deletes an allocation on the engine's initiative (relay socket error,
    /// control connection closed, shutdown), giving back its quota. The engine
    /// closes the relays itself, and the peer data connections that
    /// `nextClosedConnection()` then reports.
    public mutating func removeAllocation(_ id: AllocationID) -> RemovedAllocation? {
        guard var removed = tables.remove(id) else { return nil }
        quotas.release(user: owners[Int(id.slot)].quotaUser)
        removed.username = owners[Int(id.slot)].username
        connections.closeAll(slot: id.slot)
        return removed
    }
}
