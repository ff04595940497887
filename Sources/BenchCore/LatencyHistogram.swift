/// A log-linear histogram of non-negative integer values (nanoseconds here),
/// in the HdrHistogram layout: values below 128 are exact; above, each power
/// of two is split into 64 equal sub-buckets, so a reported value is within
/// 1/64 (about 1.6 %) of the recorded one. No allocation after init.
public struct LatencyHistogram: Sendable, Equatable {
    static let subBucketBits = 7  // 128 exact values, then 64 per power of two
    static let subBucketCount = 1 << subBucketBits
    static let halfCount = subBucketCount / 2
    static let maxShift = 63 - subBucketBits + 1

    public private(set) var counts: [UInt64]
    public private(set) var totalCount: UInt64 = 0
    public private(set) var minValue: UInt64 = .max
    public private(set) var maxValue: UInt64 = 0
    private var sum: Double = 0

    public init() {
        counts = [UInt64](repeating: 0, count: Self.subBucketCount + Self.maxShift * Self.halfCount)
    }

    @inline(__always)
    static func index(of value: UInt64) -> Int {
        if value < UInt64(subBucketCount) { return Int(value) }
        let msb = 63 - value.leadingZeroBitCount
        let shift = msb - (subBucketBits - 1)
        let sub = Int(value >> UInt64(shift))  // in [64, 128)
        return subBucketCount + (shift - 1) * halfCount + (sub - halfCount)
    }

    /// The highest value that lands in bucket `index`.
    static func highestEquivalent(ofIndex index: Int) -> UInt64 {
        if index < subBucketCount { return UInt64(index) }
        let shift = (index - subBucketCount) / halfCount + 1
        let sub = UInt64((index - subBucketCount) % halfCount + halfCount)
        return ((sub + 1) << UInt64(shift)) &- 1
    }

    @inline(__always)
    public mutating func record(_ value: UInt64, count: UInt64 = 1) {
        counts[Self.index(of: value)] &+= count
        totalCount &+= count
        if value < minValue { minValue = value }
        if value > maxValue { maxValue = value }
        sum += Double(value) * Double(count)
    }

    public mutating func add(_ other: LatencyHistogram) {
        for i in counts.indices where other.counts[i] != 0 { counts[i] &+= other.counts[i] }
        totalCount &+= other.totalCount
        minValue = Swift.min(minValue, other.minValue)
        maxValue = Swift.max(maxValue, other.maxValue)
        sum += other.sum
    }

    public mutating func reset() {
        for i in counts.indices { counts[i] = 0 }
        totalCount = 0
        minValue = .max
        maxValue = 0
        sum = 0
    }

    public var mean: Double { totalCount == 0 ? 0 : sum / Double(totalCount) }

    /// The value at percentile `p` (0...100): the smallest bucket's highest
    /// equivalent value such that at least p % of the values are at or below it,
    /// clamped to the recorded min and max. 0 when empty.
    public func valueAtPercentile(_ p: Double) -> UInt64 {
        guard totalCount > 0 else { return 0 }
        let clamped = Swift.max(0, Swift.min(100, p))
        var target = UInt64((clamped / 100 * Double(totalCount)).rounded(.up))
        if target == 0 { target = 1 }
        var running: UInt64 = 0
        for i in counts.indices where counts[i] != 0 {
            running &+= counts[i]
            if running >= target {
                return Swift.max(minValue, Swift.min(maxValue, Self.highestEquivalent(ofIndex: i)))
            }
        }
        return maxValue
    }
}
