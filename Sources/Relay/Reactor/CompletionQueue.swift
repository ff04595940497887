import URing

/// Completions the epoll backend made and the worker has not reaped yet,
/// oldest first. The epoll reactor performs I/O when readiness is reported
/// (and sends at flush), and records each result here as the completion an
/// io_uring would have posted, so the worker's dispatch cannot tell the two
/// backends apart.
///
/// Storage is reserved at start; only a queue longer than that (an
/// overloaded worker that has not reaped) grows it, on the control path.
struct CompletionQueue: ~Copyable {
    private var storage: UnsafeMutablePointer<Completion>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(64, capacity)
        storage = .allocate(capacity: self.capacity)
    }

    deinit {
        // Completion is a trivial type: nothing to deinitialize.
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func append(_ c: Completion) {
        if count == capacity { grow() }
        (storage + (head + count) % capacity).initialize(to: c)
        count += 1
    }

    /// Moves up to `into.count` completions out, oldest first; returns how many.
    @inline(__always)
    mutating func take(into out: UnsafeMutableBufferPointer<Completion>) -> Int {
        let n = min(count, out.count)
        for i in 0..<n { out[i] = storage[(head + i) % capacity] }
        head = (head + n) % capacity
        count -= n
        if count == 0 { head = 0 }
        return n
    }

    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Completion>.allocate(capacity: capacity * 2)
        for i in 0..<count { (bigger + i).initialize(to: storage[(head + i) % capacity]) }
        storage.deallocate()
        storage = bigger
        capacity *= 2
        head = 0
    }
}
