// TURN state machine: the control path (authenticated requests through
// handleSTUN) and the per-packet lookups of the data path with 1,000
// allocations present. Operations live in BenchmarkFixtures (ControlOps,
// DataPathOps) so the callgrind ARC check runs the same code.
import Benchmark
import BenchmarkFixtures
import TURN

/// Built once per process, outside any measurement; never freed.
nonisolated(unsafe) let control: UnsafeMutablePointer<ControlFixture> = {
    let p = UnsafeMutablePointer<ControlFixture>.allocate(capacity: 1)
    p.initialize(to: ControlFixture())
    return p
}()

nonisolated(unsafe) let dataPath: UnsafeMutablePointer<DataPathFixture> = {
    let p = UnsafeMutablePointer<DataPathFixture>.allocate(capacity: 1)
    p.initialize(to: DataPathFixture())
    return p
}()

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .mallocCountTotal]
    // Gated: allocation counts, exactly; wall clock is reported only (see STUN suite).
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(relative: [:], absolute: [.p90: 0]),
    ]
    let perPacket = Benchmark.Configuration(
        metrics: metrics, scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 2_000, thresholds: thresholds)
    let perRequest = Benchmark.Configuration(
        metrics: metrics, scalingFactor: .one, maxDuration: .seconds(2), maxIterations: 20_000, thresholds: thresholds)

    // Control path.
    Benchmark("handleSTUN_Allocate_CreatePermission_ChannelBind_Refresh0", configuration: perRequest) { benchmark in
        let f = control
        var sum = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            sum &+= ControlOps.allocatePermitBindRefresh(&f.pointee)
        }
        benchmark.stopMeasurement()
        blackHole(sum)
        precondition(sum > 0, "control round took an error path")
    }

    Benchmark("handleSTUN_Binding", configuration: perPacket) { benchmark in
        let f = control
        var sum = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            sum &+= ControlOps.binding(&f.pointee)
        }
        benchmark.stopMeasurement()
        blackHole(sum)
        precondition(sum > 0, "Binding took an error path")
    }

    // Data path: round-robin over the 1,000 allocations.
    func lookup(_ name: String, _ op: @escaping @Sendable (borrowing DataPathFixture, Int) -> Int) {
        Benchmark(name, configuration: perPacket) { benchmark in
            let f = dataPath
            let n = DataPathFixture.allocationCount
            var sum = 0
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations {
                sum &+= op(f.pointee, i % n)
            }
            benchmark.stopMeasurement()
            blackHole(sum)
            precondition(sum > 0, "\(name) took an error path")
        }
    }

    lookup("routeChannelData_1k") { DataPathOps.routeChannelData($0, $1) }
    lookup("routePeerData_channel_1k") { DataPathOps.routePeerDataChannel($0, $1) }
    lookup("routePeerData_dataIndication_1k") { DataPathOps.routePeerDataIndication($0, $1) }
    lookup("isPermitted_1k") { DataPathOps.isPermitted($0, $1) }

    Benchmark("handleSTUN_SendIndication_1k", configuration: perPacket) { benchmark in
        let f = dataPath
        let n = DataPathFixture.allocationCount
        var sum = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            sum &+= DataPathOps.sendIndication(&f.pointee, i % n)
        }
        benchmark.stopMeasurement()
        blackHole(sum)
        precondition(sum > 0, "Send indication took an error path")
    }
}
