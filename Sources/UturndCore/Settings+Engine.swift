import ArgumentParser
import Relay

extension Settings {
    /// Ring tuning group (`EngineOptions`): workers, ring and buffer sizes,
    /// and the switches that force older kernel paths, set on `engine`. Runs
    /// after the listening group: the default worker count depends on the
    /// relay port range.
    static func engineTuning(_ e: EngineOptions, onlineCPUs: Int, engine: inout EngineConfig) throws(ValidationError) {
        engine.workers = e.workers ?? onlineCPUs
        // Each worker needs a relay port of its own: the default shrinks to
        // the range, an explicit --workers above it is refused by problem().
        if e.workers == nil, engine.workers > Int(engine.maxPort) - Int(engine.minPort) + 1 {
            engine.workers = Int(engine.maxPort) - Int(engine.minPort) + 1
        }
        engine.pinWorkers = e.pinWorkers
        for (value, flag) in [(e.sqEntries, "--sq-entries"), (e.cqEntries, "--cq-entries")]
        where value < 1 || value > Int(UInt32.max) {
            throw ValidationError("\(flag) \(value) is out of range.")
        }
        engine.sqEntries = UInt32(e.sqEntries)
        engine.cqEntries = UInt32(e.cqEntries)
        engine.buffers = e.buffers
        engine.bufferSize = e.bufferSize
        engine.sendOperations = e.sendOperations
        engine.maxBatch = e.maxBatch
        engine.batchWaitMicroseconds = e.batchWaitUs
        engine.singleShotReceive = e.noMultishot
        engine.noDeferTaskrun = e.noDeferTaskrun
        engine.noSingleIssuer = e.noSingleIssuer
        engine.gso = !e.noGSO
        engine.groClient = e.groClient
        engine.groPeer = e.groPeer
        engine.groBuffers = e.groBuffers
        engine.simulateRingFailure = e.simulateIOUringFailure
        guard let backend = BackendChoice(rawValue: e.backend) else {
            throw ValidationError("--backend \(e.backend) must be auto, io_uring or epoll.")
        }
        engine.backend = backend
        guard let offload = OffloadMode(rawValue: e.offload) else {
            throw ValidationError("--offload \(e.offload) must be off, auto, tc or xdp.")
        }
        engine.offload = offload
        engine.offloadInterfaces = e.offloadInterface
        guard let filter = KernelSourceFilterMode(rawValue: e.kernelSourceFilter) else {
            throw ValidationError("--kernel-source-filter \(e.kernelSourceFilter) must be off, auto or on.")
        }
        engine.kernelSourceFilter = filter
    }
}
