import STUN

/// Recent responses by (5-tuple, transaction ID), so a retransmitted request
/// gets the identical answer without being processed twice (RFC 8656 §7.2:
/// a retransmitted Allocate must not make a second allocation; a
/// retransmitted Refresh with LIFETIME 0 must not turn into 437).
///
/// Keyed by (5-tuple, transaction ID, method). Only Allocate and Refresh
/// answers are kept (the server stores just those): CreatePermission and
/// ChannelBind are idempotent, so processing their retransmissions again
/// is harmless and they need not compete for room. 4-way set associative:
/// a new answer takes a free or expired way of its set, else the oldest, so
/// an entry is only lost to four newer ones with colliding hashes. Entries
/// live 40 s (the RFC 8489 client transaction timeout is 39.5 s).
///
/// Invariant: `slots` and `bytes` are allocated in `init` for `capacity`
/// entries of `entrySize` bytes and freed in `deinit`.
struct ResponseCache: ~Copyable {
    struct Slot {
        var fiveTuple: FiveTuple
        var transactionID: TransactionID
        var method: UInt16
        var storedAt: UInt32
        var length: UInt16
        var used: Bool
    }

    static let entrySize = 548
    static let lifetime: UInt32 = 40
    static let ways = 4
    let slots: UnsafeMutablePointer<Slot>
    let bytes: UnsafeMutableRawPointer
    /// Sets - 1 (a power of two minus one).
    let mask: Int

    init(capacity: Int) {
        var cap = 16
        while cap < capacity { cap <<= 1 }
        precondition(cap % ResponseCache.ways == 0)
        slots = .allocate(capacity: cap)
        slots.initialize(
            repeating: Slot(
                fiveTuple: FiveTuple(client: TransportAddress(ip: IPAddress(v4: 0), port: 0), server: TransportAddress(ip: IPAddress(v4: 0), port: 0)),
                transactionID: TransactionID(high: 0, low: 0), method: 0, storedAt: 0, length: 0, used: false),
            count: cap)
        bytes = .allocate(byteCount: cap * ResponseCache.entrySize, alignment: 8)
        mask = cap / ResponseCache.ways - 1
    }

    deinit {
        slots.deallocate()
        bytes.deallocate()
    }

    /// The first slot of the set for `t`.
    @inline(__always)
    func setStart(_ t: TransactionID) -> Int {
        (Int(truncatingIfNeeded: mix(t.low, UInt64(t.high))) & mask) * ResponseCache.ways
    }

    @inline(__always)
    func matches(_ s: Slot, _ fiveTuple: FiveTuple, _ t: TransactionID, _ method: STUNMethod, now: MonotonicTime) -> Bool {
        s.used && s.transactionID == t && s.method == method.rawValue && s.fiveTuple == fiveTuple
            && now.seconds &- s.storedAt < ResponseCache.lifetime
    }

    /// Copies a cached response into `out`; returns its length or nil on a miss.
    func lookup(
        _ fiveTuple: FiveTuple, _ t: TransactionID, method: STUNMethod, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let start = setStart(t)
        for i in start..<(start + ResponseCache.ways) where matches(slots[i], fiveTuple, t, method, now: now) {
            let length = Int(slots[i].length)
            guard length <= out.count else { return nil }
            out.baseAddress!.copyMemory(from: bytes + i * ResponseCache.entrySize, byteCount: length)
            return length
        }
        return nil
    }

    mutating func store(
        _ fiveTuple: FiveTuple, _ t: TransactionID, method: STUNMethod, response: UnsafeRawBufferPointer,
        now: MonotonicTime
    ) {
        guard response.count <= ResponseCache.entrySize, response.count > 0 else { return }
        let start = setStart(t)
        // A free or expired way, else the oldest.
        var victim = start
        for i in start..<(start + ResponseCache.ways) {
            let s = slots[i]
            if !s.used || now.seconds &- s.storedAt >= ResponseCache.lifetime {
                victim = i
                break
            }
            if s.storedAt < slots[victim].storedAt { victim = i }
        }
        (bytes + victim * ResponseCache.entrySize).copyMemory(from: response.baseAddress!, byteCount: response.count)
        slots[victim] = Slot(
            fiveTuple: fiveTuple, transactionID: t, method: method.rawValue, storedAt: now.seconds,
            length: UInt16(response.count), used: true)
    }
}
