/// A hashed timing wheel with one-second slots that tells which allocations
/// are due, so `expire(now:)` costs O(slots passed + entries due) rather
/// than a scan of every allocation.
///
/// Entries are allocation slots, linked intrusively (`next`/`prev` arrays
/// indexed by slot), so scheduling and cancelling are O(1) and allocate
/// nothing. The wheel spans `mask + 1` seconds, sized above the longest
/// lifetime, so a bucket normally holds only entries due in that very second;
/// longer deadlines still work (the due time is checked), they just stay put
/// for more than one lap.
///
/// Invariant: the four pointer arrays are allocated in `init` and freed in
/// `deinit`; slot indices passed in are below `capacity`.
struct TimingWheel: ~Copyable {
    static let none = UInt32.max
    let heads: UnsafeMutablePointer<UInt32>
    let next: UnsafeMutablePointer<UInt32>
    let prev: UnsafeMutablePointer<UInt32>
    let due: UnsafeMutablePointer<UInt32>
    let mask: UInt32
    let capacity: Int
    /// The earliest second not yet fully drained.
    private(set) var cursor: UInt32

    init(capacity: Int, horizonSeconds: UInt32, start: UInt32) {
        var w: UInt32 = 64
        while w <= horizonSeconds + 1 { w <<= 1 }
        heads = .allocate(capacity: Int(w))
        heads.initialize(repeating: TimingWheel.none, count: Int(w))
        next = .allocate(capacity: capacity)
        next.initialize(repeating: TimingWheel.none, count: capacity)
        prev = .allocate(capacity: capacity)
        prev.initialize(repeating: TimingWheel.none, count: capacity)
        due = .allocate(capacity: capacity)
        due.initialize(repeating: 0, count: capacity)
        mask = w - 1
        self.capacity = capacity
        cursor = start
    }

    deinit {
        heads.deallocate()
        next.deallocate()
        prev.deallocate()
        due.deallocate()
    }

    /// Schedules `slot` (which must not be scheduled) to fall due at `second`.
    mutating func schedule(_ slot: UInt32, at second: UInt32) {
        let d = max(second, cursor)
        due[Int(slot)] = d
        let b = Int(d & mask)
        let head = heads[b]
        next[Int(slot)] = head
        prev[Int(slot)] = TimingWheel.none
        if head != TimingWheel.none { prev[Int(head)] = slot }
        heads[b] = slot
    }

    /// Removes a scheduled `slot`.
    mutating func cancel(_ slot: UInt32) {
        let s = Int(slot)
        let n = next[s]
        let p = prev[s]
        if p != TimingWheel.none {
            next[Int(p)] = n
        } else {
            heads[Int(due[s] & mask)] = n
        }
        if n != TimingWheel.none { prev[Int(n)] = p }
        next[s] = TimingWheel.none
        prev[s] = TimingWheel.none
    }

    mutating func reschedule(_ slot: UInt32, at second: UInt32) {
        cancel(slot)
        schedule(slot, at: second)
    }

    /// Removes and returns one slot due at or before `now`, or nil when none is.
    mutating func popDue(now: UInt32) -> UInt32? {
        guard now >= cursor else { return nil }
        // After a long pause one lap visits every bucket; no need for more.
        if now - cursor > mask { cursor = now - mask }
        while true {
            var s = heads[Int(cursor & mask)]
            while s != TimingWheel.none {
                if due[Int(s)] <= now {
                    cancel(s)
                    return s
                }
                s = next[Int(s)]
            }
            // Stay on `now`: something may still be scheduled for this second.
            if cursor == now { return nil }
            cursor += 1
        }
    }
}
