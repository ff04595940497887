/// The relay ports one worker may hand out: its own slice of the configured
/// range, so workers never contend for a port.
///
/// Ports are taken round-robin from a free list kept as a ring of port
/// numbers, so a just-freed port is reused last (a late packet from a peer of
/// the old allocation is then unlikely to reach a new one). All storage is
/// allocated at start; taking and returning a port allocates nothing.
public struct PortRange: ~Copyable {
    /// The worker's slice, inclusive.
    public let first: UInt16
    public let last: UInt16
    private let ring: UnsafeMutableBufferPointer<UInt16>
    private var head = 0
    private var count: Int

    /// Splits `min...max` into `workers` contiguous slices and returns slice `index`.
    /// Slices differ in size by at most one port.
    public static func slice(min: UInt16, max: UInt16, workers: Int, index: Int) -> ClosedRange<UInt16> {
        precondition(workers > 0 && index >= 0 && index < workers && min <= max)
        let total = Int(max) - Int(min) + 1
        let base = total / workers
        let extra = total % workers
        let start = Int(min) + index * base + Swift.min(index, extra)
        let size = base + (index < extra ? 1 : 0)
        return UInt16(start)...UInt16(start + size - 1)
    }

    public init(_ range: ClosedRange<UInt16>) {
        first = range.lowerBound
        last = range.upperBound
        count = range.count
        ring = .allocate(capacity: count)
        for (i, port) in range.enumerated() { ring[i] = port }
    }

    deinit { ring.deallocate() }

    /// Ports not handed out.
    public var available: Int { count }

    /// Takes the next free port, or nil when the slice is exhausted (508).
    public mutating func take() -> UInt16? {
        guard count > 0 else { return nil }
        let port = ring[head]
        head = (head + 1) % ring.count
        count -= 1
        return port
    }

    /// Takes a free port that satisfies `accept` (EVEN-PORT asks for an even
    /// one), looking at each free port at most once. Ports skipped stay free,
    /// in order.
    public mutating func take(where accept: (UInt16) -> Bool) -> UInt16? {
        for _ in 0..<count {
            guard let port = take() else { return nil }
            if accept(port) { return port }
            give(port)
        }
        return nil
    }

    /// Returns a port taken from this slice. Returning a port twice, or one
    /// outside the slice, is a bug in the caller.
    public mutating func give(_ port: UInt16) {
        precondition(port >= first && port <= last && count < ring.count, "port \(port) returned twice or not ours")
        ring[(head + count) % ring.count] = port
        count += 1
    }
}
