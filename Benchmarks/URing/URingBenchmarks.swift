// The ring's own cost per batch and the send batcher's, apart from the
// sockets (the Relay suite measures them together with the kernel's UDP
// work). Operations in Benchmarks/Support/RelayFixture/EngineParts.swift.
// Gated on mallocCountTotal = 0 (Benchmarks/Thresholds); wall clock is reported.
import Benchmark
import RelayFixture

/// Built once per process, outside any measurement; never freed.
nonisolated(unsafe) let parts: UnsafeMutablePointer<EngineParts> = {
    let p = UnsafeMutablePointer<EngineParts>.allocate(capacity: 1)
    p.initialize(to: EngineParts())
    return p
}()

let benchmarks: @Sendable () -> Void = {
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(relative: [:], absolute: [.p90: 0]),
    ]
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
        maxIterations: 200, thresholds: thresholds)

    Benchmark("ring_NOP_batch_64", configuration: config) { benchmark in
        let p = parts
        var sum = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { sum &+= p.pointee.nopBatch() }
        benchmark.stopMeasurement()
        precondition(sum == 64 * benchmark.scaledIterations.count, "NOPs lost")
    }

    Benchmark("sendBatcher_64x120B_oneGSOGroup", configuration: config) { benchmark in
        let p = parts
        var sum = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { sum &+= p.pointee.sendBatcherGroup() }
        benchmark.stopMeasurement()
        precondition(sum == 64 * benchmark.scaledIterations.count, "datagrams lost")
    }
}
