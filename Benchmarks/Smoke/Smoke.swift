import Benchmark
import STUN

let benchmarks: @Sendable () -> Void = {
    Benchmark("address", configuration: .init(metrics: [.wallClock, .mallocCountTotal, .instructions])) { b in
        for _ in b.scaledIterations { blackHole(IPAddress(v4: 0x7f00_0001).byteCount) }
    }
}
