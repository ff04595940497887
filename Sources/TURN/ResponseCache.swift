import STUN

/// Recent responses by (5-tuple, transaction ID), so a retransmitted request
/// gets the identical answer without being processed twice (RFC 8656 §7.2:
/// a retransmitted Allocate must not make a second allocation; a
/// retransmitted Refresh with LIFETIME 0 must not turn into 437).
///
/// Direct-mapped: a colliding newer response evicts the older, which at
/// worst makes a retransmission be processed again. Entries live 40 s (the
/// RFC 8489 client transaction timeout is 39.5 s).
///
/// Invariant: `slots` and `bytes` are allocated in `init` for `capacity`
/// entries of `entrySize` bytes and freed in `deinit`.
struct ResponseCache: ~Copyable {
    struct Slot {
        var fiveTuple: FiveTuple
        var transactionID: TransactionID
        var storedAt: UInt32
        var length: UInt16
        var used: Bool
    }

    static let entrySize = 548
    static let lifetime: UInt32 = 40
    let slots: UnsafeMutablePointer<Slot>
    let bytes: UnsafeMutableRawPointer
    let mask: Int

    init(capacity: Int) {
        var cap = 16
        while cap < capacity { cap <<= 1 }
        slots = .allocate(capacity: cap)
        slots.initialize(
            repeating: Slot(
                fiveTuple: FiveTuple(client: TransportAddress(ip: IPAddress(v4: 0), port: 0), server: TransportAddress(ip: IPAddress(v4: 0), port: 0)),
                transactionID: TransactionID(high: 0, low: 0), storedAt: 0, length: 0, used: false),
            count: cap)
        bytes = .allocate(byteCount: cap * ResponseCache.entrySize, alignment: 8)
        mask = cap - 1
    }

    deinit {
        slots.deallocate()
        bytes.deallocate()
    }

    @inline(__always)
    func index(_ t: TransactionID) -> Int {
        Int(truncatingIfNeeded: mix(t.low, UInt64(t.high))) & mask
    }

    /// Copies a cached response into `out`; returns its length or nil on a miss.
    func lookup(_ fiveTuple: FiveTuple, _ t: TransactionID, now: MonotonicTime, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let i = index(t)
        let s = slots[i]
        guard s.used, s.transactionID == t, s.fiveTuple == fiveTuple, now.seconds &- s.storedAt < ResponseCache.lifetime,
            Int(s.length) <= out.count
        else { return nil }
        out.baseAddress!.copyMemory(from: bytes + i * ResponseCache.entrySize, byteCount: Int(s.length))
        return Int(s.length)
    }

    mutating func store(_ fiveTuple: FiveTuple, _ t: TransactionID, response: UnsafeRawBufferPointer, now: MonotonicTime) {
        guard response.count <= ResponseCache.entrySize, response.count > 0 else { return }
        let i = index(t)
        (bytes + i * ResponseCache.entrySize).copyMemory(from: response.baseAddress!, byteCount: response.count)
        slots[i] = Slot(fiveTuple: fiveTuple, transactionID: t, storedAt: now.seconds, length: UInt16(response.count), used: true)
    }
}
