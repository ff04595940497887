import Glibc
import STUN
import TURN
import URing

/// RFC 8016 moves across workers: the client-facing sockets of allocations
/// whose client moved to a 5-tuple that SO_REUSEPORT hashes to another
/// worker.
///
/// Each one is a UDP socket bound with SO_REUSEPORT to the listener's
/// address and port and connected to the client's new address: the kernel
/// hands a connected socket its remote's datagrams ahead of the unconnected
/// listener copies (and never picks it for other remotes), so the client's
/// datagrams reach the worker that owns its allocation. Datagrams received
/// on it are routed exactly like a listener's. Sends to the client still go
/// out of this worker's listener copy: same source address and port, and
/// the per-packet path keeps its one lookup by local address.
///
/// A fixed table (no growth on the packet path); a move that finds it full
/// is refused with 508. Slots carry a generation so that a completion of a
/// closed socket's receive is recognised and dropped, as for relay sockets.
struct MovedSockets: ~Copyable {
    struct Slot {
        var fd: Int32 = -1
        var generation: UInt32 = 0
        var allocation = AllocationID(slot: 0, generation: 0)
        /// The listener whose address it is bound to (index into the worker's listeners).
        var listener: Int = 0
        var inUse = false
    }

    /// How many a worker holds at most.
    static let capacity = 256

    private let slots: UnsafeMutableBufferPointer<Slot>
    /// Receives of closed sockets to cancel.
    private(set) var toCancel: [UserData] = []
    /// Slots whose receive ended and must be re-armed.
    private(set) var toRearm: [UserData] = []

    init() {
        slots = .allocate(capacity: Self.capacity)
        slots.initialize(repeating: Slot())
        toCancel.reserveCapacity(Self.capacity)
        toRearm.reserveCapacity(Self.capacity)
    }

    deinit {
        for i in 0..<slots.count where slots[i].inUse { Glibc.close(slots[i].fd) }
        slots.deallocate()
    }

    var count: Int { Self.capacity }
    var hasRoom: Bool { slots.contains { !$0.inUse } }

    /// Opens a socket bound to `local` (SO_REUSEPORT, like the listener
    /// copies) and connected to `client`. Control path.
    ///
    /// Between bind and connect the socket is briefly an unconnected member
    /// of the listener's reuseport group (Linux cannot connect a socket
    /// before binding it to a chosen address); a datagram of another client
    /// that lands on it in that window is read and routed once the socket
    /// is armed, like one on this worker's listener. A new client loses
    /// nothing; a datagram of an allocation another worker owns gets 437 or
    /// is dropped as unroutable, as when a client's 5-tuple changes.
    static func open(local: TransportAddress, client: TransportAddress, gro: Bool) throws(URingError) -> Int32 {
        let s = try UDPSocket.bound(to: SocketAddress(local), reusePort: true)
        do {
            if gro { try s.setUDPGRO(true) }
            try s.connect(to: SocketAddress(client))
        } catch {
            s.close()
            throw error
        }
        return s.rawValue
    }

    /// Takes `fd` into a free slot for `allocation`; nil when full (the
    /// caller closes it). Returns the slot and its generation.
    mutating func adopt(fd: Int32, allocation: AllocationID, listener: Int) -> (slot: UInt32, generation: UInt32)? {
        guard let i = slots.firstIndex(where: { !$0.inUse }) else { return nil }
        slots[i].fd = fd
        slots[i].allocation = allocation
        slots[i].listener = listener
        slots[i].inUse = true
        return (UInt32(i), slots[i].generation)
    }

    /// The slot of a completion, if its socket is still the one it was armed for.
    @inline(__always)
    func live(slot: UInt32, generation: UInt32) -> Slot? {
        let i = Int(slot)
        guard i < slots.count, slots[i].inUse, slots[i].generation == generation else { return nil }
        return slots[i]
    }

    /// Closes the socket of `allocation`, if it has one (it ended, or moved
    /// again); its armed receive is queued for cancelling. Control path.
    mutating func close(allocation: AllocationID) {
        for i in 0..<slots.count where slots[i].inUse && slots[i].allocation == allocation {
            toCancel.append(UserData(kind: .movedReceive, slot: UInt32(i), generation: slots[i].generation))
            Glibc.close(slots[i].fd)
            slots[i].inUse = false
            slots[i].fd = -1
            slots[i].generation = UserData.nextGeneration(after: slots[i].generation)
        }
    }

    mutating func clearCancels() { toCancel.removeAll(keepingCapacity: true) }

    mutating func receiveEnded(_ ud: UserData) { toRearm.append(ud) }

    mutating func clearRearms() { toRearm.removeAll(keepingCapacity: true) }
}
