import CCrypto
import STUN

/// Where an RFC 6062 peer data connection stands.
public enum ConnectionState: UInt8, Sendable, Equatable {
    /// Connect accepted; the engine is opening the connection to the peer
    /// and will call `TURNServer.connectCompleted`.
    case connecting
    /// Peer connection up (Connect succeeded, or the peer connected to the
    /// relay); waiting at most 30 s for the client's ConnectionBind.
    case awaitingBind
    /// ConnectionBind done: the engine splices client and peer connections.
    case bound
}

/// One live peer data connection, as the engine may ask about it.
public struct ConnectionInfo: Sendable, Equatable {
    public var allocation: AllocationID
    public var peer: TransportAddress
    public var state: ConnectionState
}

/// What answering a Connect later takes: the request's transaction ID and
/// how its response is signed (the key and flavour the request used, and
/// whether it carried FINGERPRINT). Trivial, so it lives in the entry.
struct PendingConnect {
    var transactionID: TransactionID
    var key: IntegrityKey
    var sha256: Bool
    var fingerprint: Bool
}

struct ConnectionEntry {
    enum Phase: UInt8 {
        case free
        case connecting
        case awaitingBind
        case bound
        /// The allocation is gone; kept (ID reserved) until the engine
        /// collects it with `popClosed`.
        case closed
    }

    var id: UInt32
    var allocation: AllocationID
    var peer: TransportAddress
    var phase: Phase
    /// Second by which ConnectionBind must arrive (awaitingBind only).
    var deadline: UInt32
    /// Links of the allocation's list, or of the closed list.
    var prev: UInt32
    var next: UInt32
    var pending: PendingConnect?
}

struct ConnectionIDKey: TableKey {
    var id: UInt32
    @inline(__always) func tableHash(seed: UInt64) -> UInt64 { mix(seed, UInt64(id)) }
}

/// A worker's RFC 6062 peer data connections, fixed in size at start.
///
/// Storage: entries in one pool of `limits.maxConnections`; each allocation
/// slot heads a doubly linked list of its own entries (at most
/// `maxConnectionsPerAllocation`, so "is there one to this peer already?"
/// walks a short list); an open-addressing index maps CONNECTION-ID → entry;
/// a timing wheel over entry indexes holds the ConnectionBind deadlines.
///
/// Invariants: every pointer is allocated in `init` and freed in `deinit`
/// and nothing grows; an ID is in the index iff its entry's phase is not
/// `.free`; an entry is on the wheel iff its phase is `.awaitingBind`; an
/// entry is on its allocation's list iff its phase is `.connecting`,
/// `.awaitingBind` or `.bound`, and on the closed list iff `.closed`; a
/// free entry is on the free stack.
///
/// When an allocation goes, its entries move to the closed list rather than
/// being freed, so the engine can learn their IDs (`popClosed`) without any
/// queue that could overflow: the closed list can never hold more than the
/// pool.
struct ConnectionTable: ~Copyable {
    static let none = UInt32.max
    /// RFC 6062 §5.2, §5.3: a peer data connection not bound within 30 s is closed.
    static let bindTimeout: UInt32 = 30

    let capacity: Int
    let perAllocation: Int
    let allocationSlots: Int
    let entries: UnsafeMutablePointer<ConnectionEntry>
    let freeStack: UnsafeMutablePointer<UInt32>
    var freeCount: Int
    /// Per allocation slot: first entry of its list, and the list's length.
    let heads: UnsafeMutablePointer<UInt32>
    let counts: UnsafeMutablePointer<UInt16>
    var closedHead = ConnectionTable.none
    var byID: OpenTable<ConnectionIDKey, UInt32>
    var wheel: TimingWheel
    /// IDs carry `tag` in their top `tagBits` bits (see `TURNServer.setConnectionIDTag`).
    var tag: UInt32 = 0
    var tagBits = 0

    init(limits: TableLimits, now: MonotonicTime) {
        capacity = max(0, limits.maxConnections)
        perAllocation = max(0, min(limits.maxConnectionsPerAllocation, Int(UInt16.max)))
        allocationSlots = limits.maxAllocations
        let n = max(1, capacity)
        entries = .allocate(capacity: n)
        entries.initialize(
            repeating: ConnectionEntry(
                id: 0, allocation: AllocationID(slot: 0, generation: 0),
                peer: TransportAddress(ip: IPAddress(v4: 0), port: 0), phase: .free, deadline: 0,
                prev: ConnectionTable.none, next: ConnectionTable.none, pending: nil),
            count: n)
        freeStack = .allocate(capacity: n)
        for i in 0..<capacity { freeStack[i] = UInt32(capacity - 1 - i) }
        freeCount = capacity
        heads = .allocate(capacity: allocationSlots)
        heads.initialize(repeating: ConnectionTable.none, count: allocationSlots)
        counts = .allocate(capacity: allocationSlots)
        counts.initialize(repeating: 0, count: allocationSlots)
        var seed: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &seed) { uturn_random_bytes($0.baseAddress, 8) }
        byID = OpenTable(maxCount: n, seed: seed)
        wheel = TimingWheel(capacity: n, horizonSeconds: ConnectionTable.bindTimeout, start: now.seconds)
    }

    deinit {
        entries.deallocate()
        freeStack.deallocate()
        heads.deallocate()
        counts.deallocate()
    }

    /// Entries in use, closed ones not yet collected included.
    var count: Int { capacity - freeCount }

    // MARK: Lookup

    /// The entry of a live (not closed) connection.
    func index(of id: UInt32) -> Int? {
        guard let i = byID.get(ConnectionIDKey(id: id)) else { return nil }
        let phase = entries[Int(i)].phase
        return phase == .free || phase == .closed ? nil : Int(i)
    }

    func info(_ id: UInt32) -> ConnectionInfo? {
        guard let i = index(of: id) else { return nil }
        let e = entries[i]
        let state: ConnectionState =
            switch e.phase {
            case .connecting: .connecting
            case .awaitingBind: .awaitingBind
            default: .bound
            }
        return ConnectionInfo(allocation: e.allocation, peer: e.peer, state: state)
    }

    /// True when `allocation` has a connection to `peer` being made, awaiting
    /// its bind or bound (RFC 6062 §5.2: a second Connect gets 446).
    func hasConnection(to peer: TransportAddress, in allocation: AllocationID) -> Bool {
        guard Int(allocation.slot) < allocationSlots else { return false }
        var i = heads[Int(allocation.slot)]
        while i != ConnectionTable.none {
            let e = entries[Int(i)]
            if e.peer == peer && e.allocation == allocation { return true }
            i = e.next
        }
        return false
    }

    // MARK: Changes

    /// A new connection of `allocation` to or from `peer`; nil when the pool
    /// or the allocation's share is full.
    mutating func insert(
        allocation: AllocationID, peer: TransportAddress, phase: ConnectionEntry.Phase, pending: PendingConnect?
    ) -> (index: Int, id: UInt32)? {
        let slot = Int(allocation.slot)
        guard slot < allocationSlots else { return nil }
        // Entries of an earlier allocation in this slot would have been closed
        // by closeAll; should one remain (the tables were changed behind
        // TURNServer's back), close it now rather than count it here.
        if heads[slot] != ConnectionTable.none && entries[Int(heads[slot])].allocation != allocation {
            closeAll(slot: allocation.slot)
        }
        guard freeCount > 0, Int(counts[slot]) < perAllocation else { return nil }
        let id = freshID()
        freeCount -= 1
        let i = freeStack[freeCount]
        let head = heads[slot]
        entries[Int(i)] = ConnectionEntry(
            id: id, allocation: allocation, peer: peer, phase: phase, deadline: 0, prev: ConnectionTable.none,
            next: head, pending: pending)
        if head != ConnectionTable.none { entries[Int(head)].prev = i }
        heads[slot] = i
        counts[slot] += 1
        byID.set(ConnectionIDKey(id: id), i)
        return (Int(i), id)
    }

    /// Starts the 30 s wait for ConnectionBind.
    mutating func awaitBind(_ i: Int, now: MonotonicTime) {
        precondition(entries[i].phase == .connecting || entries[i].phase == .awaitingBind)
        if entries[i].phase == .awaitingBind { wheel.cancel(UInt32(i)) }
        entries[i].phase = .awaitingBind
        entries[i].pending = nil
        entries[i].deadline = now.seconds &+ ConnectionTable.bindTimeout
        wheel.schedule(UInt32(i), at: entries[i].deadline)
    }

    mutating func markBound(_ i: Int) {
        precondition(entries[i].phase == .awaitingBind)
        wheel.cancel(UInt32(i))
        entries[i].phase = .bound
    }

    /// Frees an entry in any phase but `.free`.
    mutating func remove(_ i: Int) {
        precondition(entries[i].phase != .free)
        if entries[i].phase == .awaitingBind { wheel.cancel(UInt32(i)) }
        release(i)
    }

    /// Frees an entry that is not on the wheel.
    private mutating func release(_ i: Int) {
        let e = entries[i]
        unlink(i)
        if e.phase != .closed { counts[Int(e.allocation.slot)] -= 1 }
        byID.remove(ConnectionIDKey(id: e.id))
        entries[i].phase = .free
        entries[i].pending = nil
        freeStack[freeCount] = UInt32(i)
        freeCount += 1
    }

    /// Moves every entry of the allocation in `slot` to the closed list.
    mutating func closeAll(slot: UInt32) {
        guard Int(slot) < allocationSlots else { return }
        var i = heads[Int(slot)]
        while i != ConnectionTable.none {
            let next = entries[Int(i)].next
            if entries[Int(i)].phase == .awaitingBind { wheel.cancel(i) }
            entries[Int(i)].phase = .closed
            entries[Int(i)].pending = nil
            entries[Int(i)].prev = ConnectionTable.none
            entries[Int(i)].next = closedHead
            if closedHead != ConnectionTable.none { entries[Int(closedHead)].prev = i }
            closedHead = i
            i = next
        }
        heads[Int(slot)] = ConnectionTable.none
        counts[Int(slot)] = 0
    }

    /// Frees one closed entry and returns what it was.
    mutating func popClosed() -> (connectionID: UInt32, allocation: AllocationID)? {
        guard closedHead != ConnectionTable.none else { return nil }
        let i = Int(closedHead)
        let e = entries[i]
        remove(i)
        return (e.id, e.allocation)
    }

    /// Frees one entry whose ConnectionBind deadline is at or before `now`
    /// and returns what it was; nil when none is due.
    mutating func popExpired(now: MonotonicTime) -> (connectionID: UInt32, allocation: AllocationID)? {
        // popDue takes the entry off the wheel; only awaitingBind entries are on it.
        guard let i = wheel.popDue(now: now.seconds) else { return nil }
        let e = entries[Int(i)]
        precondition(e.phase == .awaitingBind, "a connection on the bind wheel is not awaiting its bind")
        release(Int(i))
        return (e.id, e.allocation)
    }

    // MARK: Internals

    private mutating func unlink(_ i: Int) {
        let e = entries[i]
        if e.prev != ConnectionTable.none {
            entries[Int(e.prev)].next = e.next
        } else if e.phase == .closed {
            closedHead = e.next
        } else {
            heads[Int(e.allocation.slot)] = e.next
        }
        if e.next != ConnectionTable.none { entries[Int(e.next)].prev = e.prev }
        entries[i].prev = ConnectionTable.none
        entries[i].next = ConnectionTable.none
    }

    /// A random ID, not zero and not in use: RFC 6062 §5.2 wants it to name
    /// one connection, and an unguessable one costs nothing here.
    private func freshID() -> UInt32 {
        while true {
            var r: UInt32 = 0
            _ = withUnsafeMutableBytes(of: &r) { uturn_random_bytes($0.baseAddress, 4) }
            let id = tagBits == 0 ? r : (tag << (32 - tagBits)) | (r >> tagBits)
            if id != 0 && byID.get(ConnectionIDKey(id: id)) == nil { return id }
        }
    }
}
