// STUN codec hot paths: parsing, integrity/fingerprint verification,
// ChannelData, and encoding into caller-owned buffers. The operations live
// in BenchmarkFixtures (STUNOps) so the callgrind ARC check runs the same code.
import Benchmark
import BenchmarkFixtures
import STUN

/// Built once per process, outside any measurement; never freed.
nonisolated(unsafe) let fixture: UnsafeMutablePointer<STUNFixture> = {
    let p = UnsafeMutablePointer<STUNFixture>.allocate(capacity: 1)
    p.initialize(to: STUNFixture())
    return p
}()

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .mallocCountTotal]
    // Gated (Benchmarks/Thresholds): allocation counts, exactly. Wall clock is
    // reported but not gated: on a shared 2-core VM its p90 moves 5x between runs.
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(relative: [:], absolute: [.p90: 0]),
    ]
    let config = Benchmark.Configuration(
        metrics: metrics, scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 2_000, thresholds: thresholds)

    func bench(_ name: String, _ op: @escaping @Sendable (borrowing STUNFixture) -> Int) {
        Benchmark(name, configuration: config) { benchmark in
            let f = fixture
            var sum = 0
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                sum &+= op(f.pointee)
            }
            benchmark.stopMeasurement()
            blackHole(sum)
            precondition(sum > 0, "\(name) took an error path")
        }
    }

    bench("parseBinding_RFC5769") { STUNOps.parseBinding($0) }
    bench("parseVerifyAllocate_MI_FINGERPRINT") { STUNOps.parseAndVerifyAllocate($0) }
    bench("parseChannelData") { STUNOps.parseChannelData($0) }
    bench("encodeSuccessResponse_XORMAPPED_MI_FINGERPRINT") { STUNOps.encodeSuccessResponse($0) }
    bench("encodeDataIndication_inPlace") { STUNOps.encodeDataIndication($0) }
}
