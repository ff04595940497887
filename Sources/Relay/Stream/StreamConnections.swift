import Glibc
import STUN
import TURN
import URing

/// One client connection over TCP or TLS (RFC 8656 §3.1), owned by a worker.
///
/// Bytes arrive in the worker's receive buffers. Whole frames (STUN
/// messages, ChannelData) found there are handled in place; a frame split
/// across receives is gathered in `inbox`. Over TLS every frame goes
/// through `inbox`, as decrypted plaintext.
///
/// Bytes for the client are copied into `outbox`, a ring of fixed size,
/// and sent one SEND at a time from there. A full outbox drops whole
/// messages (never part of one, which would break the framing); a
/// connection whose outbox makes no progress for `stallSeconds` is closed.
/// That bounds what a slow reader can cost: `outboxCapacity` bytes.
struct StreamConnection {
    /// What the bytes on a connection are.
    enum Role: UInt8, CustomStringConvertible {
        /// A TURN client: STUN messages and ChannelData (RFC 8656 §3.1).
        case client
        /// RFC 6062: a TCP connection to a peer from a relayed address.
        case peer
        /// RFC 6062: a client's data connection after ConnectionBind.
        case clientData

        var description: String {
            switch self {
            case .client: "client"
            case .peer: "peer"
            case .clientData: "client data"
            }
        }
    }

    /// -1: the slot is free.
    var fd: Int32 = -1
    var generation: UInt32 = 0
    var fiveTuple = FiveTuple(client: .init(ip: IPAddress(v4: 0), port: 0), server: .init(ip: IPAddress(v4: 0), port: 0))
    var tls: TLSStream?
    /// The allocation made over this connection (its 5-tuple's), if any.
    var allocation: AllocationID?

    // RFC 6062 data connections (role .peer or .clientData): raw bytes,
    // relayed to and from the other side of their pair (TCPRelay/DataPairs,
    // entry `pair`); `inbox` holds what the other side could not take yet,
    // and no receive is armed until it is empty again (so a slow reader on
    // one side slows the sender on the other: TCP back-pressure).
    var role = Role.client
    /// The data pair this connection is a side of (.max: none).
    var pair: UInt32 = .max
    /// Close once the outbox has been sent (the partner ended).
    var closeWhenDrained = false
    /// Moving to another worker once its send in flight completes: read nothing more.
    var handingOff = false
    var inbox: UnsafeMutableRawPointer? = nil
    var inboxCapacity = 0
    /// Bytes held: `inbox[inboxRead..<inboxCount]` are not consumed yet.
    var inboxCount = 0
    var inboxRead = 0

    // The receive being cut into frames (`StreamPart.nextFrame`): the bytes
    // of receive buffer `pendingBuffer` not looked at yet (ciphertext over TLS).
    var pending: UnsafeMutableRawPointer? = nil
    var pendingCount = 0
    var pendingBuffer: UInt16 = 0

    var outbox: UnsafeMutableRawPointer? = nil
    var outboxCapacity = 0
    var outboxHead = 0
    var outboxCount = 0
    /// Bytes handed to the SEND in flight (0: none).
    var sending = 0

    /// Reading stopped by the traffic limits (StreamPart+Pause.swift): no
    /// receive is armed until the bucket of `pausedAllocation` in the
    /// direction `pausedToPeer` refills. Listed in `StreamConnections.paused`.
    var paused = false
    var pausedToPeer = false
    var pausedAllocation = AllocationID(slot: 0, generation: 0)

    /// The receive ended (or was never armed) and must be armed at the next flush.
    var needsReceive = false
    /// A receive (multishot or single-shot) is armed and has not ended.
    var receiving = false
    /// Closed: the socket is shut down and closed; the slot is freed once
    /// the receive and the send in flight have completed.
    var closed = false

    /// Monotonic seconds.
    var opened: UInt32 = 0
    var lastReceive: UInt32 = 0
    /// Last time the outbox was empty or a send completed.
    var lastSendProgress: UInt32 = 0

    var isTLS: Bool { tls != nil }

    var outboxFree: Int { outboxCapacity - outboxCount }

    /// Appends `count` bytes to the outbox (the caller checked the room).
    mutating func append(_ bytes: UnsafeRawPointer, count: Int) {
        guard count > 0, let out = outbox else { return }
        let tail = (outboxHead + outboxCount) % outboxCapacity
        let first = min(count, outboxCapacity - tail)
        (out + tail).copyMemory(from: bytes, byteCount: first)
        if first < count { out.copyMemory(from: bytes + first, byteCount: count - first) }
        outboxCount += count
    }

    /// Appends `count` zero bytes (ChannelData padding).
    mutating func appendZeros(_ count: Int) {
        var zeros: UInt32 = 0
        withUnsafeBytes(of: &zeros) { append($0.baseAddress!, count: min(count, 4)) }
    }

    /// The contiguous run of queued bytes from the head (what one SEND takes).
    var sendableRun: (UnsafeRawPointer, Int)? {
        guard outboxCount > 0, let out = outbox else { return nil }
        return (UnsafeRawPointer(out + outboxHead), min(outboxCount, outboxCapacity - outboxHead))
    }

    mutating func consumeSent(_ n: Int) {
        outboxHead = (outboxHead + n) % outboxCapacity
        outboxCount -= n
        if outboxCount == 0 { outboxHead = 0 }
    }
}

/// A worker's stream connections: a fixed table (sized by
/// `--tcp-connections`), a free list, and the list of connections with
/// bytes waiting for a SEND. Buffers are allocated when a connection is
/// accepted and freed when its slot is released: the control path, not
/// per packet.
struct StreamConnections: ~Copyable {
    let capacity: Int
    let outboxCapacity: Int
    let slots: UnsafeMutablePointer<StreamConnection>
    private var free: SlotFreeList
    /// Slots with queued bytes and no SEND in flight, to flush at the end of the batch.
    let dirty: UnsafeMutablePointer<UInt32>
    var dirtyCount = 0
    /// Per slot: the peer address of a CONNECT in flight (the kernel reads
    /// it until the CQE, so it lives here, not on the stack).
    let connectAddresses: UnsafeMutablePointer<sockaddr_storage>
    private let isDirty: UnsafeMutablePointer<Bool>
    /// Connections paused by the traffic limits (each at most once: a slot
    /// leaves the list when it resumes or closes), unordered.
    let paused: UnsafeMutablePointer<UInt32>
    private(set) var pausedCount = 0
    /// Open connections (not closed).
    private(set) var openCount = 0

    /// First size of a connection's inbox; it grows (up to the largest
    /// frame) only when a frame bigger than this is split across reads.
    static let inboxInitial = 4096
    static let inboxMaximum = StreamFraming.maxFrameLength + 4096

    init(capacity: Int, outboxCapacity: Int) {
        self.capacity = capacity
        self.outboxCapacity = outboxCapacity
        slots = .allocate(capacity: max(1, capacity))
        slots.initialize(repeating: StreamConnection(), count: max(1, capacity))
        free = SlotFreeList(capacity: capacity)
        dirty = .allocate(capacity: max(1, capacity))
        isDirty = .allocate(capacity: max(1, capacity))
        isDirty.initialize(repeating: false, count: max(1, capacity))
        paused = .allocate(capacity: max(1, capacity))
        connectAddresses = .allocate(capacity: max(1, capacity))
        connectAddresses.initialize(repeating: sockaddr_storage(), count: max(1, capacity))
    }

    deinit {
        for i in 0..<capacity where slots[i].fd >= 0 || slots[i].closed { releaseMemory(UInt32(i)) }
        slots.deinitialize(count: max(1, capacity))
        slots.deallocate()
        dirty.deallocate()
        isDirty.deallocate()
        paused.deallocate()
        connectAddresses.deallocate()
    }

    /// A slot for a new connection on `fd`, or nil when the table is full.
    mutating func open(fd: Int32, fiveTuple: FiveTuple, tls: TLSStream?, now: UInt32) -> UInt32? {
        guard let slot = free.take() else { return nil }
        let generation = UserData.nextGeneration(after: slots[Int(slot)].generation)
        var c = StreamConnection()
        c.fd = fd
        c.generation = generation
        c.fiveTuple = fiveTuple
        c.tls = tls
        c.inbox = .allocate(byteCount: Self.inboxInitial, alignment: 16)
        c.inboxCapacity = Self.inboxInitial
        c.outbox = .allocate(byteCount: outboxCapacity, alignment: 16)
        c.outboxCapacity = outboxCapacity
        c.opened = now
        c.lastReceive = now
        c.lastSendProgress = now
        slots[Int(slot)] = c
        openCount += 1
        return slot
    }

    /// The open connection in `slot` if its generation is `generation`.
    @inline(__always)
    func isOpen(_ slot: UInt32, generation: UInt32) -> Bool {
        Int(slot) < capacity && slots[Int(slot)].fd >= 0 && slots[Int(slot)].generation == generation
    }

    /// Client connections from `ip` now open (a linear walk: accepting is the control path).
    func count(from ip: IPAddress) -> Int {
        var n = 0
        for i in 0..<capacity where slots[i].fd >= 0 && slots[i].role == .client && slots[i].fiveTuple.client.ip == ip {
            n += 1
        }
        return n
    }

    /// Gives up a connection whose descriptor now belongs to another worker:
    /// like `markClosed`, but the TLS session moved with it and must not be freed here.
    mutating func markHandedOff(_ slot: UInt32) {
        slots[Int(slot)].tls = nil
        markClosed(slot)
    }

    /// Marks the connection closed (the caller has shut the socket down and
    /// closed it). The slot is freed by `releaseIfDone` once nothing of the
    /// kernel's still points into its buffers.
    mutating func markClosed(_ slot: UInt32) {
        let i = Int(slot)
        slots[i].fd = -1
        slots[i].closed = true
        if slots[i].paused { unpause(slot) }
        openCount -= 1
        releaseIfDone(slot)
    }

    mutating func releaseIfDone(_ slot: UInt32) {
        let i = Int(slot)
        guard slots[i].closed, !slots[i].receiving, slots[i].sending == 0 else { return }
        releaseMemory(slot)
        let generation = slots[i].generation
        slots[i] = StreamConnection()
        slots[i].generation = generation
        free.give(slot)
    }

    private func releaseMemory(_ slot: UInt32) {
        let i = Int(slot)
        slots[i].inbox?.deallocate()
        slots[i].inbox = nil
        slots[i].outbox?.deallocate()
        slots[i].outbox = nil
        slots[i].tls?.free()
        slots[i].tls = nil
    }

    /// Grows a connection's inbox to hold at least `needed` bytes (control
    /// path: only a frame larger than `inboxInitial` split across reads).
    mutating func growInbox(_ slot: UInt32, to needed: Int) -> Bool {
        let i = Int(slot)
        guard needed <= Self.inboxMaximum else { return false }
        if needed <= slots[i].inboxCapacity { return true }
        let capacity = min(Self.inboxMaximum, max(needed, slots[i].inboxCapacity * 2))
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        if let old = slots[i].inbox {
            bigger.copyMemory(from: old, byteCount: slots[i].inboxCount)
            old.deallocate()
        }
        slots[i].inbox = bigger
        slots[i].inboxCapacity = capacity
        return true
    }

    /// Marks `slot` paused and lists it (a no-op if it is already).
    mutating func pause(_ slot: UInt32, allocation: AllocationID, toPeer: Bool) {
        let i = Int(slot)
        guard !slots[i].paused, pausedCount < max(1, capacity) else { return }
        slots[i].paused = true
        slots[i].pausedToPeer = toPeer
        slots[i].pausedAllocation = allocation
        paused[pausedCount] = slot
        pausedCount += 1
    }

    /// Clears `slot`'s pause and takes it off the list (a linear walk of the
    /// paused connections: once per pause, not per packet).
    mutating func unpause(_ slot: UInt32) {
        slots[Int(slot)].paused = false
        for k in 0..<pausedCount where paused[k] == slot {
            pausedCount -= 1
            paused[k] = paused[pausedCount]
            return
        }
    }

    mutating func markDirty(_ slot: UInt32) {
        guard !isDirty[Int(slot)] else { return }
        isDirty[Int(slot)] = true
        dirty[dirtyCount] = slot
        dirtyCount += 1
    }

    /// Starts a flush: returns how many slots are listed (read them with
    /// `dirty[k]`, clearing each with `clearDirty`) and empties the list.
    /// Slots re-marked while flushing are listed again from index 0; each
    /// slot is re-marked at most once per slot read, so the writes never
    /// overtake the reads.
    mutating func beginFlush() -> Int {
        defer { dirtyCount = 0 }
        return dirtyCount
    }

    mutating func clearDirty(_ slot: UInt32) { isDirty[Int(slot)] = false }
}
