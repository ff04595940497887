import CURing
import Glibc
import Synchronization
import TURN
import URing

/// Why the engine could not start, in words an operator can act on.
public struct EngineError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Log sink the engine writes to (one line per call, no trailing newline).
/// The daemon decides the format and destination; the engine never prints.
public typealias EngineLog = @Sendable (_ level: EngineLogLevel, _ message: String) -> Void

public enum EngineLogLevel: Int, Sendable, Comparable {
    case debug, info, notice, warning, error
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The relay engine: `config.workers` worker threads, each with its own
/// io_uring, buffer ring, listener sockets (SO_REUSEPORT), relay sockets and
/// TURN tables. `start()` returns once every worker is listening (or throws
/// the first worker's start error); `stop()` may be called from any thread;
/// `wait()` joins the workers.
public final class Engine: Sendable {
    public let config: EngineConfig
    let turn: TURNConfiguration
    let quotas: AllocationQuotas
    /// The per-source request buckets every worker charges (one source, one
    /// budget, whichever worker its ports hash to).
    let sourceBuckets = SourceBuckets()
    let log: EngineLog
    let controls: [WorkerControl]
    let threads = Mutex<[pthread_t]>([])
    /// The kernel fast path while the workers run (nil: off); closed after they stop.
    let fastPath = Mutex<FastPathProgram?>(nil)
    /// The kernel source filter while the workers run (nil: off); closed after they stop.
    let sourceFilter = Mutex<SourceFilterProgram?>(nil)
    /// The backend the workers run on, decided (probed) at init so the
    /// metrics can name it before the workers start, and why `auto` fell
    /// back to epoll (logged by `start`).
    let chosenBackend: Backend
    let fallbackReason: String?
    /// Workers' on-miss user lookups (off until a credential thread enables it).
    public let lookups = CredentialLookups()

    public init(
        config: EngineConfig, turn: TURNConfiguration, quotas: AllocationQuotas = AllocationQuotas(),
        log: @escaping EngineLog
    ) throws(EngineError) {
        if let problem = config.problem() { throw EngineError(problem) }
        self.config = config
        self.turn = turn
        self.quotas = quotas
        self.log = log
        self.controls = (0..<config.workers).map { WorkerControl(index: $0) }
        (chosenBackend, fallbackReason) = Self.chooseBackend(config)
    }

    /// `Backend.choose` on a thread of its own, joined before returning: the
    /// probe's rings are torn down asynchronously, and the kernel's task
    /// work for them would interrupt the caller's blocking socket calls
    /// (EINTR from a recv with SO_RCVTIMEO) if they were made on its thread.
    static func chooseBackend(_ config: EngineConfig) -> (Backend, fallback: String?) {
        guard config.backend == .auto else { return Backend.choose(config) }
        let result = Mutex<(Backend, fallback: String?)>((.epoll, nil))
        do {
            let thread = try spawnThread { result.withLock { $0 = Backend.choose(config) } }
            pthread_join(thread, nil)
        } catch {
            result.withLock { $0 = Backend.choose(config) }
        }
        return result.withLock { $0 }
    }

    /// Starts the workers; returns when all listen. Throws the first start
    /// error (after stopping the workers that did start).
    public func start() throws(EngineError) {
        try checkListenAddressesFree()
        let interfaces =
            config.offloadInterfaces.isEmpty
            ? FastPathProgram.interfaces(
                holding: config.listen.map(\.ip) + config.relayIPsV4 + config.relayIPsV6)
            : config.offloadInterfaces
        let program = try FastPathProgram.start(mode: config.offload, interfaces: interfaces, log: log)
        fastPath.withLock { $0 = program }
        let maps = program?.maps
        let filter = try SourceFilterProgram.start(
            mode: config.kernelSourceFilter, limitsOn: !turn.sourceLimits.isOff, log: log)
        sourceFilter.withLock { $0 = filter }
        let filterMaps = filter?.maps
        let backend = chosenBackend
        if let fallbackReason { log(.warning, fallbackReason) }
        log(.info, "backend: \(backend.rawValue)")
        let siblings = controls
        for control in controls {
            let config = self.config
            let turn = self.turn
            let quotas = self.quotas
            let sources = self.sourceBuckets
            let log = self.log
            let lookups = self.lookups
            let thread = try spawnThread {
                if config.pinWorkers { pinCurrentThread(toCPU: control.index) }
                curing_name_current_thread("uturn-w\(control.index)")
                var worker: Worker
                do throws(EngineError) {
                    worker = try Worker(
                        index: control.index, config: config, turnConfig: turn, quotas: quotas, sources: sources,
                        control: control, siblings: siblings, fastPath: maps, sourceFilter: filterMaps, backend: backend,
                        lookups: lookups, log: log)
                } catch {
                    control.startResult.withLock { $0 = .failed(error.description) }
                    return
                }
                control.startResult.withLock { $0 = .running }
                worker.run()
            }
            threads.withLock { $0.append(thread) }
        }
        // Wait for every worker to report; start-up is milliseconds.
        for control in controls {
            while true {
                let result = control.startResult.withLock { $0 }
                if case .failed(let why) = result {
                    stop()
                    wait()
                    throw EngineError(why)
                }
                if result != nil { break }
                usleep(1000)
            }
        }
    }

    /// Workers bind their listeners with SO_REUSEPORT, which would also let
    /// them share a port with another server that set it (coturn does), the
    /// kernel silently splitting clients between the two. So each address is
    /// first bound once without SO_REUSEPORT: if that fails, the port is taken.
    func checkListenAddressesFree() throws(EngineError) {
        for (address, kind) in config.listen.map({ ($0, "udp") }) + config.dtlsListen.map({ ($0, "dtls") }) {
            do {
                let probe = try UDPSocket.bound(to: SocketAddress(address), reusePort: false)
                probe.close()
            } catch {
                throw EngineError(
                    "cannot listen on \(kind) \(address): \(error) (another server, such as a coturn turnserver, may be using it)")
            }
        }
        for (address, kind) in config.tcpListen.map({ ($0, "tcp") }) + config.tlsListen.map({ ($0, "tls") }) {
            do {
                let probe = try StreamSocket.listening(on: SocketAddress(address), reusePort: false, backlog: 1)
                probe.close()
            } catch {
                throw EngineError(
                    "cannot listen on \(kind) \(address): \(error) (another server, such as a coturn turnserver, may be using it)")
            }
        }
    }

    /// Asks every worker to stop (any thread, also from a signal-handling
    /// thread). `graceful` with `drainSeconds > 0`: workers refuse new
    /// allocations (508) and stop once their last allocation is gone or the
    /// time is up; otherwise they stop promptly. Either way they close their
    /// sockets and leave their loop; `wait()` joins them.
    public func stop(graceful: Bool = false, drainSeconds: Int = 0) {
        if graceful && drainSeconds > 0 {
            let deadline = Worker.monotonicNow().nanoseconds &+ UInt64(drainSeconds) &* 1_000_000_000
            for control in controls { control.requestDrain(until: deadline) }
        } else {
            for control in controls { control.requestStop() }
        }
    }

    /// Hands every worker a new TURN configuration (users, REST secrets, peer
    /// policy, lifetimes, quotas' limits stay as started). Each worker takes
    /// it at its next wake-up, within milliseconds; allocations, permissions
    /// and channels are kept. Table sizes (`limits`) are fixed at start and
    /// are not changed by a reload.
    public func reload(turn configuration: TURNConfiguration) {
        for control in controls where !control.send(.configuration(configuration)) {
            log(.warning, "worker \(control.index): inbox full; the new configuration was not delivered")
        }
    }

    /// Tells worker `index` the lookup of `username` is over (`found`: the
    /// user is in the configuration sent before this; `failed`: the database
    /// could not be asked). Call after `reload`.
    public func answerLookup(worker index: Int, username: String, found: Bool, failed: Bool = false) {
        guard controls.indices.contains(index) else { return }
        if !controls[index].send(.lookupDone(username: username, found: found, failed: failed)) {
            log(
                .warning,
                "worker \(index): inbox full; a user lookup's answer was not delivered (the request times out)")
        }
    }

    /// Hands every worker a new certificate and key for its TLS listeners
    /// (SIGHUP). New connections use it; open ones keep theirs.
    public func reload(tls context: TLSServerContext) {
        for control in controls where !control.send(.tls(context)) {
            log(.warning, "worker \(control.index): inbox full; the new certificate was not delivered")
        }
    }

    /// Hands every worker a new certificate and key for its DTLS listeners
    /// (SIGHUP). New sessions use it; open ones keep theirs.
    public func reload(dtls context: DTLSServerContext) {
        for control in controls where !control.send(.dtls(context)) {
            log(.warning, "worker \(control.index): inbox full; the new DTLS certificate was not delivered")
        }
    }

    /// Counters of one worker (published once a second and at stop).
    public func counters(ofWorker index: Int) -> [(name: String, value: UInt64)] {
        guard controls.indices.contains(index) else { return [] }
        return WorkerCounters.Field.allCases.map { f in ("\(f)", controls[index].counters[f]) }
    }

    /// Datagrams that reached an offloaded entry but were passed to user
    /// space, by reason. Nil when offload is off.
    public var offloadPassed: OffloadPassed? {
        fastPath.withLock { $0?.passedToUserSpace }
    }

    /// Datagrams the kernel source filter dropped (sources the per-source
    /// limits blocked). Nil when the filter is off.
    public var kernelSourceDrops: UInt64? {
        sourceFilter.withLock { $0?.drops }
    }

    /// "io_uring" or "epoll" (the `uturn_backend_info` metric).
    public var backend: String { chosenBackend.rawValue }

    /// True once a drain or stop has been asked for.
    public var isDraining: Bool {
        controls.contains { $0.stopRequest.load(ordering: .relaxed) != WorkerControl.run }
    }

    /// Number of worker threads.
    public var workerCount: Int { controls.count }

    /// Blocks until every worker thread has exited.
    public func wait() {
        let all = threads.withLock { t -> [pthread_t] in
            defer { t.removeAll() }
            return t
        }
        for t in all { pthread_join(t, nil) }
        // The workers have deleted their entries; now detach the program.
        fastPath.withLock { $0 = nil }
        sourceFilter.withLock { $0 = nil }
    }

    /// Counters summed over workers (each published once a second and at stop).
    public func counter(_ field: String) -> UInt64? {
        guard let f = WorkerCounters.Field.allCases.first(where: { "\($0)" == field }) else { return nil }
        return controls.reduce(0) { $0 &+ $1.counters[f] }
    }

    /// All counters by name, summed over workers.
    public var counters: [(name: String, value: UInt64)] {
        WorkerCounters.Field.allCases.map { f in ("\(f)", controls.reduce(0) { $0 &+ $1.counters[f] }) }
    }
}

// MARK: Threads

/// Starts a pthread running `body`. Foundation's Thread would do, but the
/// engine keeps to the C API it already uses, and this is start-up only.
private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

private func spawnThread(_ body: @escaping @Sendable () -> Void) throws(EngineError) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, nil,
        { raw in
            let box = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw EngineError("cannot start worker thread: \(String(cString: strerror(rc)))")
    }
    return thread
}

/// Pins the calling thread to online CPU `k` (mod the CPU count).
private func pinCurrentThread(toCPU k: Int) {
    let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    _ = curing_pin_current_thread(Int32(k % cpus))
}
