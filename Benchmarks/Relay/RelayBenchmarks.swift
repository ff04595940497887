// The relay engine's per-packet path end to end: a real Engine (1 io_uring
// worker) on 127.0.0.1 relaying ChannelData between a client socket and a
// peer socket (Benchmarks/Support/RelayFixture). One operation is one full
// round trip: client → worker (`dispatch`: ChannelData → `routeChannelData`
// → send batcher) → peer, peer → worker (`routePeerData` → ChannelData
// header written in place → send batcher) → client, plus both send
// completions (buffers recycled).
//
// mallocCountTotal is process-wide (every thread), so 0 over a sample of
// 1,000 round trips means neither the worker nor the test sockets allocated.
// ARC is checked with callgrind instead (Benchmarks/arc-check.sh, RelayARCCheck).
import Benchmark
import RelayFixture

/// Built once per process, outside any measurement; never freed (the engine
/// runs until the process exits).
nonisolated(unsafe) let relay: UnsafeMutablePointer<RelayFixture> = {
    let p = UnsafeMutablePointer<RelayFixture>.allocate(capacity: 1)
    p.initialize(to: RelayFixture())
    return p
}()

let benchmarks: @Sendable () -> Void = {
    // Gated: allocation counts, exactly; wall clock is reported only (see STUN suite).
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(relative: [:], absolute: [.p90: 0]),
    ]
    let perRoundTrip = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
        maxIterations: 200, thresholds: thresholds)

    Benchmark("ChannelData_roundTrip_120B", configuration: perRoundTrip) { benchmark in
        let f = relay
        var sum = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            sum &+= f.pointee.roundTrip()
        }
        benchmark.stopMeasurement()
        blackHole(sum)
        precondition(
            sum == RelayFixture.frameSize * benchmark.scaledIterations.count,
            "a relayed round trip failed (timeout or wrong bytes)")
    }
}
