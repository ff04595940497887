import STUN

/// One live allocation as the admin API shows it: who owns it, its 5-tuple,
/// relayed addresses, permissions, channels, age and what it relayed.
/// A copy made on the owning worker's thread on request (control path).
public struct AllocationSnapshot: Sendable, Equatable {
    public struct Permission: Sendable, Equatable {
        public var peer: IPAddress
        /// Seconds until it expires.
        public var expiresIn: UInt32
        public init(peer: IPAddress, expiresIn: UInt32) {
            self.peer = peer
            self.expiresIn = expiresIn
        }
    }

    public struct Channel: Sendable, Equatable {
        public var number: UInt16
        public var peer: TransportAddress
        /// Seconds until the binding expires.
        public var expiresIn: UInt32
        public init(number: UInt16, peer: TransportAddress, expiresIn: UInt32) {
            self.number = number
            self.peer = peer
            self.expiresIn = expiresIn
        }
    }

    public var id: AllocationID
    public var username: String
    public var fiveTuple: FiveTuple
    public var relayTransport: RelayTransport
    public var relayV4: TransportAddress?
    public var relayV6: TransportAddress?
    public var ageSeconds: UInt32
    public var expiresIn: UInt32
    /// Unexpired permissions only.
    public var permissions: [Permission]
    /// Bound, unexpired channels only (numbers merely reserved are left out).
    public var channels: [Channel]
    /// Everything relayed so far, including what a kernel fast path relayed
    /// up to its last read (the worker reads it just before a snapshot).
    public var counters: TrafficCounters

    public init(
        id: AllocationID, username: String, fiveTuple: FiveTuple, relayTransport: RelayTransport,
        relayV4: TransportAddress?, relayV6: TransportAddress?, ageSeconds: UInt32, expiresIn: UInt32,
        permissions: [Permission], channels: [Channel], counters: TrafficCounters
    ) {
        self.id = id
        self.username = username
        self.fiveTuple = fiveTuple
        self.relayTransport = relayTransport
        self.relayV4 = relayV4
        self.relayV6 = relayV6
        self.ageSeconds = ageSeconds
        self.expiresIn = expiresIn
        self.permissions = permissions
        self.channels = channels
        self.counters = counters
    }
}

extension TURNServer {
    /// Snapshots of the live allocations, those of `user` only when given.
    /// Walks every slot: the control path, on request.
    public func snapshots(user: String?, now: MonotonicTime) -> [AllocationSnapshot] {
        var out: [AllocationSnapshot] = []
        for id in liveAllocations() {
            let owner = owners[Int(id.slot)]
            if let user, owner.username != user { continue }
            if let s = tables.snapshot(of: id, username: owner.username, createdAt: owner.createdAt, now: now) {
                out.append(s)
            }
        }
        return out
    }

    /// A snapshot of one live allocation.
    public func snapshot(of id: AllocationID, now: MonotonicTime) -> AllocationSnapshot? {
        guard tables.isLive(id) else { return nil }
        let owner = owners[Int(id.slot)]
        return tables.snapshot(of: id, username: owner.username, createdAt: owner.createdAt, now: now)
    }

    /// The live allocations of `user` (for disconnecting them).
    public func allocations(ofUser user: String) -> [AllocationID] {
        liveAllocations().filter { owners[Int($0.slot)].username == user }
    }

    /// Every live allocation's id, by slot.
    func liveAllocations() -> [AllocationID] {
        var ids: [AllocationID] = []
        for slot in 0..<tables.limits.maxAllocations where tables.records[slot].live {
            ids.append(AllocationID(slot: UInt32(slot), generation: tables.records[slot].generation))
        }
        return ids
    }
}

extension AllocationTable {
    func snapshot(of id: AllocationID, username: String, createdAt: UInt32, now: MonotonicTime) -> AllocationSnapshot? {
        guard isLive(id) else { return nil }
        let r = records[Int(id.slot)]
        let left = { (until: UInt32) -> UInt32 in until > now.seconds ? until - now.seconds : 0 }
        var permissions: [AllocationSnapshot.Permission] = []
        let p = permissionsPerAllocation
        for i in Int(id.slot) * p..<(Int(id.slot) + 1) * p where self.permissions[i].live {
            let e = self.permissions[i].expiresAt
            if e > now.seconds { permissions.append(.init(peer: self.permissions[i].ip, expiresIn: left(e))) }
        }
        var channels: [AllocationSnapshot.Channel] = []
        forEachChannel(of: id) { number, peer, e in
            if e > now.seconds { channels.append(.init(number: number, peer: peer, expiresIn: left(e))) }
        }
        return AllocationSnapshot(
            id: id, username: username, fiveTuple: r.fiveTuple, relayTransport: r.relayTransport,
            relayV4: r.relayV4?.address, relayV6: r.relayV6?.address,
            ageSeconds: now.seconds >= createdAt ? now.seconds - createdAt : 0, expiresIn: left(r.expiresAt),
            permissions: permissions, channels: channels.sorted { $0.number < $1.number }, counters: r.counters)
    }
}
