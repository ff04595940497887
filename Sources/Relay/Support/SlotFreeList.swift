/// The free slots of a fixed table (connections, relay sockets, data
/// pairs): a stack of slot numbers allocated once, so taking and giving back
/// a slot allocates nothing. Slot 0 is taken first.
struct SlotFreeList: ~Copyable {
    private let slots: UnsafeMutablePointer<UInt32>
    let capacity: Int
    /// Slots not taken.
    private(set) var count: Int

    init(capacity: Int) {
        self.capacity = capacity
        slots = .allocate(capacity: max(1, capacity))
        for i in 0..<capacity { slots[i] = UInt32(capacity - 1 - i) }
        count = capacity
    }

    deinit { slots.deallocate() }

    /// A free slot, or nil when every slot is taken.
    mutating func take() -> UInt32? {
        guard count > 0 else { return nil }
        count -= 1
        return slots[count]
    }

    /// Gives back a slot taken from this list (once).
    mutating func give(_ slot: UInt32) {
        precondition(count < capacity, "slot \(slot) given back twice")
        slots[count] = slot
        count += 1
    }
}
