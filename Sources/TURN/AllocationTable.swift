import CCrypto
import STUN

/// Sizes fixed when a worker starts; the tables never grow.
public struct TableLimits: Sendable, Hashable {
    /// Allocations one worker can hold.
    public var maxAllocations: Int
    /// Permissions (peer IPs) per allocation; more get 508.
    public var maxPermissionsPerAllocation: Int
    /// Channels per allocation, counting numbers still reserved after expiry; more get 508.
    public var maxChannelsPerAllocation: Int
    /// RFC 6062 peer data connections (being made, awaiting ConnectionBind or
    /// bound) one TCP allocation may hold; a Connect past it gets 508 and a
    /// peer connection past it is refused.
    public var maxConnectionsPerAllocation: Int
    /// RFC 6062 peer data connections one worker can hold, all allocations together.
    public var maxConnections: Int
    /// How long a permission and a channel binding last (RFC 8656 §9: 300 s;
    /// §12: 600 s), and how long an expired channel's number and peer stay
    /// reserved (§12: 5 minutes). Only tests change them, to see expiry and
    /// rebinding without waiting.
    public var permissionLifetime = AllocationTable.permissionLifetime
    public var channelLifetime = AllocationTable.channelLifetime
    public var channelReservation = AllocationTable.channelReservation

    public init(
        maxAllocations: Int = 4096, maxPermissionsPerAllocation: Int = 16, maxChannelsPerAllocation: Int = 16,
        maxConnectionsPerAllocation: Int = 16, maxConnections: Int = 1024
    ) {
        self.maxAllocations = maxAllocations
        self.maxPermissionsPerAllocation = maxPermissionsPerAllocation
        self.maxChannelsPerAllocation = maxChannelsPerAllocation
        self.maxConnectionsPerAllocation = maxConnectionsPerAllocation
        self.maxConnections = maxConnections
    }
}

/// What the engine must undo when an allocation goes away.
public struct RemovedAllocation: Hashable, Sendable {
    public var id: AllocationID
    public var fiveTuple: FiveTuple
    /// Relay sockets to close (IPv4 and/or IPv6; both for a dual allocation).
    public var relayV4: RelayEndpoint?
    public var relayV6: RelayEndpoint?
    /// What the relay carried: for `.tcp` the endpoint is a listening socket,
    /// and the allocation's peer data connections are reported by
    /// `TURNServer.nextClosedConnection()`.
    public var relayTransport = RelayTransport.udp
    /// What the allocation relayed in its life (for the deletion log line).
    public var counters = TrafficCounters()
    /// What the traffic limits dropped or refused in its life (for the log line).
    public var drops = PolicyDrops()
    /// Who owned it (filled in by `TURNServer`; the tables do not know users).
    public var username = ""
}

/// One allocation's hot state. Trivial (no references), so the slot array
/// is plain memory and reading it costs no ARC.
struct AllocationRecord {
    var generation: UInt32 = 0
    var live = false
    var fiveTuple = FiveTuple(
        client: TransportAddress(ip: IPAddress(v4: 0), port: 0), server: TransportAddress(ip: IPAddress(v4: 0), port: 0))
    var relayV4: RelayEndpoint?
    var relayV6: RelayEndpoint?
    var relayTransport = RelayTransport.udp
    var expiresAt: UInt32 = 0
    var permissionCount: UInt16 = 0
    var channelCount: UInt16 = 0
    var counters = TrafficCounters()
    var limiter = LimiterState()
}

struct PermissionEntry {
    var ip: IPAddress
    var expiresAt: UInt32
    var live: Bool
}

struct ChannelEntry {
    var number: UInt16
    var peer: TransportAddress
    /// Bound until this second; reserved (not rebindable elsewhere) for 5 more minutes.
    var expiresAt: UInt32
    var live: Bool
}

struct PermissionKey: TableKey {
    var slot: UInt32
    var ip: IPAddress
    @inline(__always) func tableHash(seed: UInt64) -> UInt64 { ip.tableHash(seed: seed ^ UInt64(slot)) }
}

struct ChannelNumberKey: TableKey {
    var slot: UInt32
    var number: UInt16
    @inline(__always) func tableHash(seed: UInt64) -> UInt64 { mix(seed, UInt64(slot) << 16 | UInt64(number)) }
}

struct ChannelPeerKey: TableKey {
    var slot: UInt32
    var peer: TransportAddress
    @inline(__always) func tableHash(seed: UInt64) -> UInt64 { peer.tableHash(seed: seed ^ UInt64(slot)) }
}

/// Result of binding a channel (RFC 8656 §12.2).
public enum ChannelBindOutcome: Sendable, Equatable {
    case bound
    /// The number is bound (or still reserved) to another peer: 400.
    case numberTakenByOtherPeer
    /// The peer is bound (or still reserved) to another number: 400.
    case peerHasOtherNumber
    /// The allocation's channel cap is reached: 508.
    case full
}

/// A worker's allocations, permissions and channels, with every lookup the
/// data path needs in O(1) and without allocation or reference counting.
///
/// Storage: per-allocation records in one array indexed by slot; permission
/// and channel entries in pools carved into fixed runs per slot (slot `s`
/// owns `[s*P, s*P+P)`), so dropping an allocation walks only its own run;
/// four open-addressing indexes map 5-tuple → slot, (slot, peer IP) →
/// permission, (slot, channel) → channel and (slot, peer) → channel.
///
/// Invariants: every pointer is allocated in `init` and freed in `deinit`
/// and nothing grows; an index entry exists iff the entry it points at is
/// live; a slot is on the free stack iff its record is not live.
///
/// Permission and channel expiry is lazy: lookups compare with `now`, and
/// dead entries are swept when the allocation needs room or is deleted.
/// Channels stay reserved 5 minutes after they expire (RFC 8656 §12): the
/// number cannot move to another peer nor the peer to another number.
public struct AllocationTable: ~Copyable {
    public let limits: TableLimits
    let records: UnsafeMutablePointer<AllocationRecord>
    let permissions: UnsafeMutablePointer<PermissionEntry>
    let channels: UnsafeMutablePointer<ChannelEntry>
    let freeSlots: UnsafeMutablePointer<UInt32>
    var freeCount: Int
    var byFiveTuple: OpenTable<FiveTuple, UInt32>
    var permissionIndex: OpenTable<PermissionKey, UInt32>
    var channelByNumber: OpenTable<ChannelNumberKey, UInt32>
    var channelByPeer: OpenTable<ChannelPeerKey, UInt32>
    var wheel: TimingWheel
    /// Per-allocation limits (bytes, packets, new peers); see RateLimits.swift.
    /// The traffic limits; a reload may change their values, never which
    /// are on (`RateLimits.canReload`), so `limitsPackets` stays true.
    internal(set) var rateLimits: RateLimits
    /// `rateLimits.limitsPackets`, read once per packet.
    public let limitsPackets: Bool
    /// New peers refused by `--max-new-peers-per-second`, all allocations together.
    public internal(set) var peerRateRefusals: UInt64 = 0

    public static let permissionLifetime: UInt32 = 300
    public static let channelLifetime: UInt32 = 600
    public static let channelReservation: UInt32 = 300

    /// - Parameters:
    ///   - maxLifetime: longest allocation lifetime in seconds (sizes the wheel).
    ///   - rateLimits: per-allocation traffic limits (none by default).
    public init(limits: TableLimits, maxLifetime: UInt32 = 3600, rateLimits: RateLimits = RateLimits(), now: MonotonicTime) {
        precondition(limits.maxAllocations > 0 && limits.maxAllocations < Int(UInt32.max))
        self.limits = limits
        let n = limits.maxAllocations
        let p = max(1, limits.maxPermissionsPerAllocation)
        let c = max(1, limits.maxChannelsPerAllocation)
        records = .allocate(capacity: n)
        records.initialize(repeating: AllocationRecord(), count: n)
        permissions = .allocate(capacity: n * p)
        permissions.initialize(
            repeating: PermissionEntry(ip: IPAddress(v4: 0), expiresAt: 0, live: false), count: n * p)
        channels = .allocate(capacity: n * c)
        channels.initialize(
            repeating: ChannelEntry(number: 0, peer: TransportAddress(ip: IPAddress(v4: 0), port: 0), expiresAt: 0, live: false),
            count: n * c)
        freeSlots = .allocate(capacity: n)
        // Pop order 0, 1, 2, ...: low slots first keeps the hot records together.
        for i in 0..<n { freeSlots[i] = UInt32(n - 1 - i) }
        freeCount = n
        var seeds = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        _ = withUnsafeMutableBytes(of: &seeds) { uturn_random_bytes($0.baseAddress, 32) }
        byFiveTuple = OpenTable(maxCount: n, seed: seeds.0)
        permissionIndex = OpenTable(maxCount: n * p, seed: seeds.1)
        channelByNumber = OpenTable(maxCount: n * c, seed: seeds.2)
        channelByPeer = OpenTable(maxCount: n * c, seed: seeds.3)
        wheel = TimingWheel(capacity: n, horizonSeconds: maxLifetime, start: now.seconds)
        self.rateLimits = rateLimits
        limitsPackets = rateLimits.limitsPackets
    }

    deinit {
        records.deallocate()
        permissions.deallocate()
        channels.deallocate()
        freeSlots.deallocate()
    }

    var permissionsPerAllocation: Int { max(1, limits.maxPermissionsPerAllocation) }
    var channelsPerAllocation: Int { max(1, limits.maxChannelsPerAllocation) }

    /// Number of live allocations.
    public var count: Int { limits.maxAllocations - freeCount }

    // MARK: Allocations

    /// The live allocation for a client 5-tuple. Data path.
    @inline(__always)
    public func allocation(for fiveTuple: FiveTuple) -> AllocationID? {
        guard let slot = byFiveTuple.get(fiveTuple) else { return nil }
        return AllocationID(slot: slot, generation: records[Int(slot)].generation)
    }

    /// True while `id` names a live allocation (false for a stale id).
    @inline(__always)
    public func isLive(_ id: AllocationID) -> Bool {
        id.slot < UInt32(limits.maxAllocations) && records[Int(id.slot)].live
            && records[Int(id.slot)].generation == id.generation
    }

    /// Creates an allocation for `fiveTuple` expiring `lifetime` seconds from
    /// `now`, relaying `relayTransport` (TCP: RFC 6062). Nil when the worker
    /// is full or the 5-tuple already has one.
    /// `rate` and `cause`: its byte rate (0: none) and the limit that set it
    /// (`RateLimits.rate`), until the next `setRate`.
    public mutating func create(
        fiveTuple: FiveTuple, lifetime: UInt32, now: MonotonicTime, relayTransport: RelayTransport = .udp,
        rate: UInt64 = 0, cause: RateCause = .none
    ) -> AllocationID? {
        guard freeCount > 0, byFiveTuple.get(fiveTuple) == nil else { return nil }
        freeCount -= 1
        let slot = freeSlots[freeCount]
        let r = records + Int(slot)
        r.pointee.live = true
        r.pointee.fiveTuple = fiveTuple
        r.pointee.relayV4 = nil
        r.pointee.relayV6 = nil
        r.pointee.relayTransport = relayTransport
        r.pointee.expiresAt = now.seconds &+ lifetime
        r.pointee.permissionCount = 0
        r.pointee.channelCount = 0
        r.pointee.counters = TrafficCounters()
        r.pointee.limiter = LimiterState(limits: rateLimits, rate: rate, cause: cause, now: now.nanoseconds)
        byFiveTuple.set(fiveTuple, slot)
        wheel.schedule(slot, at: r.pointee.expiresAt)
        return AllocationID(slot: slot, generation: r.pointee.generation)
    }

    /// Records the relay sockets the provider opened for `id`.
    public mutating func setRelays(_ id: AllocationID, v4: RelayEndpoint?, v6: RelayEndpoint?) {
        guard isLive(id) else { return }
        records[Int(id.slot)].relayV4 = v4
        records[Int(id.slot)].relayV6 = v6
    }

    public func relays(of id: AllocationID) -> (v4: RelayEndpoint?, v6: RelayEndpoint?)? {
        guard isLive(id) else { return nil }
        return (records[Int(id.slot)].relayV4, records[Int(id.slot)].relayV6)
    }

    /// What a live allocation's relay carries (UDP, or TCP per RFC 6062).
    @inline(__always)
    public func relayTransport(of id: AllocationID) -> RelayTransport? {
        guard isLive(id) else { return nil }
        return records[Int(id.slot)].relayTransport
    }

    /// The 5-tuple of a live allocation (where peer data goes back to).
    @inline(__always)
    public func fiveTuple(of id: AllocationID) -> FiveTuple? {
        guard isLive(id) else { return nil }
        return records[Int(id.slot)].fiveTuple
    }

    /// Seconds left before `id` expires (0 when gone).
    public func remainingLifetime(of id: AllocationID, now: MonotonicTime) -> UInt32 {
        guard isLive(id) else { return 0 }
        let e = records[Int(id.slot)].expiresAt
        return e > now.seconds ? e - now.seconds : 0
    }

    /// Re-keys `id` to `newFiveTuple` (RFC 8016 mobility), keeping its
    /// relays, permissions, channels, lifetime and counters (they are keyed
    /// by slot). False when `id` is gone or `newFiveTuple` has an allocation.
    public mutating func move(_ id: AllocationID, to newFiveTuple: FiveTuple) -> Bool {
        guard isLive(id), byFiveTuple.get(newFiveTuple) == nil else { return false }
        byFiveTuple.remove(records[Int(id.slot)].fiveTuple)
        records[Int(id.slot)].fiveTuple = newFiveTuple
        byFiveTuple.set(newFiveTuple, id.slot)
        return true
    }

    /// Sets `id` to expire `lifetime` seconds from `now`.
    public mutating func refresh(_ id: AllocationID, lifetime: UInt32, now: MonotonicTime) {
        guard isLive(id) else { return }
        let e = now.seconds &+ lifetime
        records[Int(id.slot)].expiresAt = e
        wheel.reschedule(id.slot, at: e)
    }

    /// Deletes `id` with its permissions and channels; returns what the engine must close.
    @discardableResult
    public mutating func remove(_ id: AllocationID) -> RemovedAllocation? {
        guard isLive(id) else { return nil }
        wheel.cancel(id.slot)
        return release(slot: id.slot)
    }

    private mutating func release(slot: UInt32) -> RemovedAllocation {
        let r = records + Int(slot)
        let removed = RemovedAllocation(
            id: AllocationID(slot: slot, generation: r.pointee.generation), fiveTuple: r.pointee.fiveTuple,
            relayV4: r.pointee.relayV4, relayV6: r.pointee.relayV6, relayTransport: r.pointee.relayTransport,
            counters: r.pointee.counters, drops: r.pointee.limiter.drops)
        byFiveTuple.remove(r.pointee.fiveTuple)
        let p = permissionsPerAllocation
        for i in Int(slot) * p..<(Int(slot) + 1) * p where permissions[i].live {
            permissionIndex.remove(PermissionKey(slot: slot, ip: permissions[i].ip))
            permissions[i].live = false
        }
        let c = channelsPerAllocation
        for i in Int(slot) * c..<(Int(slot) + 1) * c where channels[i].live {
            removeChannel(at: i, slot: slot)
        }
        r.pointee.live = false
        r.pointee.permissionCount = 0
        r.pointee.channelCount = 0
        r.pointee.generation &+= 1
        freeSlots[freeCount] = slot
        freeCount += 1
        return removed
    }

    /// Removes and returns one allocation whose lifetime ended at or before
    /// `now`; call until nil once per timer tick. The engine closes the relays.
    public mutating func nextExpired(now: MonotonicTime) -> RemovedAllocation? {
        while let slot = wheel.popDue(now: now.seconds) {
            // A refresh reschedules, so anything popped is due; the check is belt and braces.
            if records[Int(slot)].live { return release(slot: slot) }
        }
        return nil
    }

    // MARK: Traffic

    /// Counts a datagram relayed client → peer. Data path.
    @inline(__always)
    public mutating func countToPeer(_ id: AllocationID, bytes: Int) {
        guard isLive(id) else { return }
        records[Int(id.slot)].counters.packetsToPeer &+= 1
        records[Int(id.slot)].counters.bytesToPeer &+= UInt64(bytes)
    }

    /// Counts a datagram relayed peer → client. Data path.
    @inline(__always)
    public mutating func countToClient(_ id: AllocationID, bytes: Int) {
        guard isLive(id) else { return }
        records[Int(id.slot)].counters.packetsToClient &+= 1
        records[Int(id.slot)].counters.bytesToClient &+= UInt64(bytes)
    }

    public func counters(of id: AllocationID) -> TrafficCounters? {
        guard isLive(id) else { return nil }
        return records[Int(id.slot)].counters
    }
}
