import STUN
import TURN

/// One RFC 6062 data connection pair: a peer connection (connected from, or
/// accepted on, a TCP allocation's relayed address) and, after the client's
/// ConnectionBind, the client's data connection. Bytes are relayed as they
/// are between the two sides, each direction with its own back-pressure
/// (liburing's examples/proxy.c models its connection pairs the same way).
struct DataPair {
    var connectionID: UInt32 = 0
    /// The TCP allocation the peer connection belongs to.
    var allocation = AllocationID(slot: 0, generation: 0)
    /// The peer side: a stream connection slot and its generation.
    var peer: UInt32 = .max
    var peerGeneration: UInt32 = 0
    /// The client side once bound (.max before the ConnectionBind).
    var client: UInt32 = .max
    var clientGeneration: UInt32 = 0
    /// A CONNECT to the peer is in flight (client-initiated, RFC 6062 §5.2).
    var connecting = false
    /// Monotonic seconds when the pair was made (the CONNECT timeout).
    var since: UInt32 = 0
    var inUse = false

    /// The other side of `slot`, if this pair has one.
    func otherSide(of slot: UInt32) -> (slot: UInt32, generation: UInt32)? {
        if slot == peer { return client == .max ? nil : (client, clientGeneration) }
        if slot == client { return (peer, peerGeneration) }
        return nil
    }
}

/// A worker's data pairs: a fixed table (one entry per possible peer
/// connection, so `--tcp-connections`) and a free list. Opening, binding
/// and ending pairs is the control path; looking up the other side of a
/// connection is an index.
struct DataPairs: ~Copyable {
    let capacity: Int
    private let entries: UnsafeMutablePointer<DataPair>
    private var free: SlotFreeList

    init(capacity: Int) {
        self.capacity = capacity
        entries = .allocate(capacity: max(1, capacity))
        entries.initialize(repeating: DataPair(), count: max(1, capacity))
        free = SlotFreeList(capacity: capacity)
    }

    deinit {
        entries.deinitialize(count: max(1, capacity))
        entries.deallocate()
    }

    subscript(_ pair: UInt32) -> DataPair {
        get { entries[Int(pair)] }
        nonmutating set { entries[Int(pair)] = newValue }
    }

    /// A new pair for a peer connection; nil when the table is full.
    mutating func open(
        connectionID: UInt32, allocation: AllocationID, peer: UInt32, peerGeneration: UInt32, connecting: Bool,
        now: UInt32
    ) -> UInt32? {
        guard let pair = free.take() else { return nil }
        entries[Int(pair)] = DataPair(
            connectionID: connectionID, allocation: allocation, peer: peer, peerGeneration: peerGeneration,
            connecting: connecting, since: now, inUse: true)
        return pair
    }

    /// The first pair in use with this CONNECTION-ID that `accept` takes (a
    /// linear walk: the control path).
    func find(_ connectionID: UInt32, where accept: (DataPair) -> Bool = { _ in true }) -> UInt32? {
        for i in 0..<capacity where entries[i].inUse && entries[i].connectionID == connectionID && accept(entries[i]) {
            return UInt32(i)
        }
        return nil
    }

    mutating func remove(_ pair: UInt32) {
        guard entries[Int(pair)].inUse else { return }
        entries[Int(pair)] = DataPair()
        free.give(pair)
    }
}
