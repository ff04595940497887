import Synchronization

/// A bounded queue between a worker and the control plane, one per
/// direction, that the consumer drains without a lock.
///
/// Single producer in the ring-buffer sense: producers serialise on a mutex
/// among themselves (a signal-handling thread, another worker handing over a
/// connection, later a credential lookup answering), so any thread may
/// send; the one consumer (the worker, for its inbox) reads with two atomic
/// loads and a store, on a wake-up, never per packet. After a successful
/// `send`, the producer wakes the consumer (the worker's eventfd; a ring
/// could post IORING_OP_MSG_RING instead).
///
/// Invariant for the unsafe storage: slot `i % capacity` is written only by
/// the producer holding the lock while `tail - head < capacity` says it is
/// free, and read (and emptied) only by the consumer while `head < tail`
/// says it is full; the release store of `tail` (`head`) publishes the
/// write (the emptying) to the other side.
final class ControlQueue<Message: Sendable>: @unchecked Sendable {
    let capacity: Int
    private let slots: UnsafeMutablePointer<Message?>
    /// Next slot to read (written by the consumer only).
    private let head = Atomic<Int>(0)
    /// Next slot to write (written by a producer holding `producers`).
    private let tail = Atomic<Int>(0)
    private let producers = Mutex<Void>(())

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: nil, count: capacity)
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }

    /// Appends `message`; false (and nothing queued) when the queue is full.
    func send(_ message: Message) -> Bool {
        producers.withLock { _ -> Bool in
            let t = tail.load(ordering: .relaxed)
            guard t - head.load(ordering: .acquiring) < capacity else { return false }
            slots[t % capacity] = message
            tail.store(t + 1, ordering: .releasing)
            return true
        }
    }

    /// The oldest message, or nil when empty. Consumer only.
    func receive() -> Message? {
        let h = head.load(ordering: .relaxed)
        guard h < tail.load(ordering: .acquiring) else { return nil }
        let message = slots[h % capacity].take()
        head.store(h + 1, ordering: .releasing)
        return message
    }
}
