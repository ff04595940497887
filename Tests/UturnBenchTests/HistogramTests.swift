import Foundation
import Testing

@testable import BenchCore

@Suite struct LatencyHistogramTests {
    @Test func emptyHistogramReportsZero() {
        let h = LatencyHistogram()
        #expect(h.totalCount == 0)
        #expect(h.valueAtPercentile(50) == 0)
        #expect(h.valueAtPercentile(99.9) == 0)
    }

    @Test func smallValuesAreExact() {
        var h = LatencyHistogram()
        for v in 1...100 { h.record(UInt64(v)) }
        #expect(h.totalCount == 100)
        #expect(h.valueAtPercentile(50) == 50)
        #expect(h.valueAtPercentile(99) == 99)
        #expect(h.valueAtPercentile(100) == 100)
        #expect(h.valueAtPercentile(0) == 1)
        #expect(h.minValue == 1 && h.maxValue == 100)
        #expect(abs(h.mean - 50.5) < 1e-9)
    }

    @Test func largeValuesWithinOnePointSixPercent() {
        var h = LatencyHistogram()
        // 1 µs ... 100 ms in ns, uniform: percentile p is about p % of 100 ms.
        for v in stride(from: UInt64(1_000), through: 100_000_000, by: 1_000) { h.record(v) }
        for (p, expected) in [(50.0, 50_000_000.0), (99.0, 99_000_000.0), (99.9, 99_900_000.0)] {
            let got = Double(h.valueAtPercentile(p))
            #expect(abs(got - expected) / expected < 1.0 / 64, "p\(p): \(got) vs \(expected)")
        }
    }

    @Test func skewedDistributionTail() {
        var h = LatencyHistogram()
        h.record(10_000, count: 990)  // 10 µs
        h.record(1_000_000, count: 9)  // 1 ms
        h.record(50_000_000, count: 1)  // 50 ms
        #expect(abs(Double(h.valueAtPercentile(50)) - 10_000) / 10_000 < 1.0 / 64)
        #expect(abs(Double(h.valueAtPercentile(99)) - 10_000) / 10_000 < 1.0 / 64)
        #expect(abs(Double(h.valueAtPercentile(99.5)) - 1_000_000) / 1_000_000 < 1.0 / 64)
        #expect(h.valueAtPercentile(99.95) == 50_000_000)  // clamped to the max
    }

    @Test func bucketIndexIsMonotonicAndBounded() {
        var last = -1
        var v: UInt64 = 0
        while v < 1 << 40 {
            let i = LatencyHistogram.index(of: v)
            #expect(i >= last)
            #expect(LatencyHistogram.highestEquivalent(ofIndex: i) >= v)
            last = i
            v = v < 256 ? v + 1 : v + v / 97
        }
        #expect(LatencyHistogram.index(of: .max) < LatencyHistogram().counts.count)
    }

    @Test func addAndReset() {
        var a = LatencyHistogram()
        var b = LatencyHistogram()
        a.record(5)
        b.record(500)
        a.add(b)
        #expect(a.totalCount == 2 && a.minValue == 5 && a.maxValue == 500)
        a.reset()
        #expect(a.totalCount == 0 && a.valueAtPercentile(50) == 0)
    }
}
