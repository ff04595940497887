import Glibc
import STUN
import TURN
import URing

/// One worker: a thread that owns one of each part and its TURN tables.
/// Nothing here is shared with other workers, so the packet path takes no
/// lock. The parts (docs/architecture.md has the map):
///
/// - `reactor` (Reactor/): the io_uring and its receive buffers; every
///   operation goes through it, and it never loses one to a full SQ.
/// - `datagram` (Datagram/): UDP listeners, relay sockets, the send batcher.
/// - `stream` (Stream/): TCP/TLS listeners and connections, TLS sessions,
///   send queues and limits.
/// - `dtls` (DTLS/): DTLS sessions of clients on the DTLS listeners.
/// - `tcpRelay` (TCPRelay/): RFC 6062 data pairs and connections moving
///   between workers.
/// - `fastPath` (FastPath/): this worker's entries in the kernel fast path.
/// - `sourceFilter` (FastPath/): its blocks in the kernel source filter.
/// - `turn`: the TURN state machine and its tables (the TURN module).
///
/// The worker routes: each completion goes to the part that owns its kind
/// (Worker+Dispatch.swift), and what a part received is routed through the
/// TURN tables to the part that sends it (Worker+Routing.swift).
///
/// The loop: wait for completions (at most until the next 1 s tick), copy
/// them out, dispatch each (receive → route → queue a send; send done →
/// recycle its buffers), then flush the queued sends as GSO batches, hand
/// recycled buffers back, re-arm receives that ended, and submit — one
/// `io_uring_enter` per batch.
///
/// Per packet: no heap allocation, no reference counting, no lock. The
/// worker is a ~Copyable struct living on its thread's stack; its tables are
/// preallocated; classes (the control block, the waker) are touched only on
/// wake-ups and ticks.
struct Worker: ~Copyable {
    let index: Int
    let control: WorkerControl
    /// Every worker's control block, this one's included (handing a
    /// connection to another worker; control path only).
    let siblings: [WorkerControl]
    let log: EngineLog
    var reactor: Reactor
    var datagram: DatagramPart
    var stream: StreamPart
    var dtls: DTLSPart
    var tcpRelay: TCPRelayPart
    var fastPath: FastPathPart
    var sourceFilter: SourceFilterPart
    var turn: TURNServer
    var counters: WorkerCounters
    /// Response scratch for the control path (a STUN response fits in 548 bytes).
    let response: UnsafeMutableRawBufferPointer
    /// Transaction IDs of the Data indications this worker makes.
    var transactionCounter: UInt64
    var nextTick: UInt64 = 0
    /// `--batch-wait-us` (zero: wake for the first completion) and how many
    /// completions a batch wait asks for.
    let batchWait: Duration
    let batchMinComplete: Int
    var stopping = false
    /// Draining: new Allocate requests get 508; stop when no allocation is left.
    var draining = false
    /// Refused requests are logged at most once a second per worker.
    var lastRefusalLog: UInt64 = 0
    var suppressedRefusals = 0
    /// Monotonic seconds at the last wake-up.
    var nowSeconds: UInt32 = 0
    /// While a Refresh handed over by another worker is handled: the socket
    /// opened for its move (Worker/Worker+Mobility.swift).
    var handedMove: HandedMoveSocket? = nil
    /// On-miss user lookups (Worker+Lookup.swift): the shared channel, the
    /// parked requests, names found unknown, and whether a parked request
    /// is being re-run (it must not park again).
    let lookups: CredentialLookups
    /// `lookups` was enabled when the worker started (read once, so the
    /// request path tests a plain Bool).
    let lookupsOn: Bool
    var pending = PendingLookups(capacity: 64)
    var unknownUsers = UnknownUsers(capacity: 64)
    var rerunning = false

    /// Size of a GRO train buffer: the most one coalesced receive can carry.
    static let largeBufferSize = 65_536 + 512

    init(
        index: Int, config: EngineConfig, turnConfig: TURNConfiguration, quotas: AllocationQuotas,
        sources: SourceBuckets? = nil, control: WorkerControl, siblings: [WorkerControl], fastPath maps: FastPathMaps?,
        sourceFilter filter: SourceFilterMaps? = nil, backend: Backend,
        lookups: CredentialLookups, log: @escaping EngineLog
    ) throws(EngineError) {
        let relayCapacity = turnConfig.limits.maxAllocations * 2
        let slice = PortRange.slice(min: config.minPort, max: config.maxPort, workers: config.workers, index: index)
        // The parts bind their listeners; one that fails closes what it
        // bound, and the parts made before it close theirs as they go.
        let datagram = try DatagramPart(
            config: config, relayCapacity: relayCapacity, ports: slice, workerIndex: index, sourceFilter: filter,
            attachFilter: !turnConfig.sourceLimits.isOff, log: log)
        let counters = WorkerCounters()
        let dtls = try DTLSPart(config: config, workerIndex: index)
        var stream = try StreamPart(
            config: config, maxAllocations: turnConfig.limits.maxAllocations, workerIndex: index,
            counters: counters.view, log: log)
        // Under a byte limit, client connections read one buffer at a time
        // (StreamPart+Pause.swift: a paused connection stops within a buffer).
        stream.singleShotClients = turnConfig.rateLimits.limitsBytes
        // The backlog can hold, without growing, every operation the worker
        // can have waiting at once in ordinary overload: a receive per
        // socket, every send operation, and a receive and a send per connection.
        let backlogCapacity =
            datagram.datagramSockets + config.sendOperations + 2 * stream.connections.capacity
            + stream.listeners.count
        var reactor = try Self.makeReactor(
            backend, index: index, config: config, datagramSockets: datagram.datagramSockets,
            backlogCapacity: backlogCapacity, log: log)
        let waker: Waker
        do { waker = try reactor.makeWaker() } catch { throw EngineError("worker \(index): eventfd: \(error)") }
        self.reactor = reactor
        self.datagram = datagram
        tcpRelay = TCPRelayPart(workers: config.workers, connections: stream.connections.capacity)
        self.stream = stream
        self.dtls = dtls
        self.counters = counters
        fastPath = FastPathPart(maps: maps, workerIndex: index, workers: config.workers, log: log)
        sourceFilter = SourceFilterPart(maps: filter)
        control.waker.withLock { $0 = waker }
        self.index = index
        self.control = control
        self.siblings = siblings
        self.lookups = lookups
        lookupsOn = lookups.isEnabled
        batchWait = .microseconds(config.batchWaitMicroseconds)
        batchMinComplete = max(2, config.maxBatch / 4)
        self.log = log
        turn = TURNServer(configuration: turnConfig, quotas: quotas, sources: sources, now: Self.monotonicNow())
        turn.setWorkerIndex(index, of: config.workers)
        if tcpRelay.tagBits > 0 { turn.setConnectionIDTag(UInt32(index), bits: tcpRelay.tagBits) }
        response = .allocate(byteCount: 2048, alignment: 8)
        transactionCounter = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
    }

    deinit {
        response.deallocate()
    }

    /// The reactor on `backend` with its receive buffers (`--buffers` small
    /// ones; large GRO-train ones when a GRO option is on, else two).
    static func makeReactor(
        _ backend: Backend, index: Int, config: EngineConfig, datagramSockets: Int, backlogCapacity: Int,
        log: EngineLog
    ) throws(EngineError) -> Reactor {
        let anyGRO = config.groClient || config.groPeer
        let largeCount = anyGRO ? config.groBuffers : 2
        let largeSize = anyGRO ? Self.largeBufferSize : 4096
        if backend == .epoll {
            let buffers: ReceiveBuffers
            do {
                buffers = try ReceiveBuffers(
                    unregisteredSmallCount: config.buffers, smallSize: config.bufferSize, largeCount: largeCount,
                    largeSize: largeSize)
            } catch {
                throw EngineError("worker \(index): cannot allocate receive buffers: \(error)")
            }
            do {
                return try Reactor(epollWith: buffers, maxBatch: config.maxBatch, backlogCapacity: backlogCapacity)
            } catch {
                throw EngineError("worker \(index): epoll: \(error)")
            }
        }
        let options = config.ringOptions
        if config.simulateRingFailure {
            throw EngineError(
                "io_uring unavailable (simulated by --simulate-io-uring-failure): "
                    + URingError.explainUnavailable(.notPermitted))
        }
        var ring: Ring
        do { ring = try Ring(options: options) } catch {
            throw EngineError("worker \(index): cannot set up io_uring: \(error)")
        }
        let features: KernelFeatures
        do { features = try KernelFeatures.probe(options: options) } catch {
            throw EngineError("worker \(index): io_uring probe failed: \(error)")
        }
        let buffers: ReceiveBuffers
        do {
            buffers = try ReceiveBuffers(
                ring: &ring, smallCount: config.buffers, smallSize: config.bufferSize, largeCount: largeCount,
                largeSize: largeSize)
        } catch {
            throw EngineError(
                "worker \(index): cannot register receive buffers (\(config.buffers) × \(config.bufferSize) B, \(largeCount) × \(largeSize) B): \(error). \(error.explanation)"
            )
        }
        if index == 0 { log(.info, "io_uring: \(features)") }
        return Reactor(
            ring: ring, buffers: buffers, multishot: features.useMultishotReceive, datagramSockets: datagramSockets,
            maxBatch: config.maxBatch, backlogCapacity: backlogCapacity)
    }

    static func monotonicNow() -> MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    // MARK: The loop

    mutating func run() {
        for i in 0..<datagram.listeners.count { datagram.armListener(i, &reactor) }
        for i in 0..<stream.listeners.count { stream.armListener(i, &reactor) }
        flushSubmissions()
        var now = Self.monotonicNow()
        nextTick = now.nanoseconds + 1_000_000_000
        // --batch-wait-us: while traffic flows, wait for a batch of
        // completions (or the wait) rather than wake for each one. After a
        // wake with nothing (idle), the next wait blocks for the first
        // completion again, so an idle worker does not spin.
        var busy = false
        while !stopping {
            var wait = Duration.nanoseconds(Int64(nextTick &- min(nextTick, now.nanoseconds)))
            if stream.connections.pausedCount > 0 {
                wait = min(wait, .nanoseconds(Int64(clamping: stream.nextResume &- min(stream.nextResume, now.nanoseconds))))
            }
            var minComplete = 1
            if busy && batchWait > .zero {
                wait = min(wait, batchWait)
                minComplete = batchMinComplete
            }
            do { try reactor.wait(minComplete: minComplete, timeout: wait) } catch {
                log(.error, "worker \(index): io_uring_enter failed: \(error)")
                break
            }
            now = Self.monotonicNow()
            nowSeconds = now.seconds
            stream.nowSeconds = nowSeconds
            busy = false
            // Drain what is ready, a bounded batch at a time, so sends are
            // flushed at least every `maxBatch` completions.
            while true {
                let n = reactor.reap()
                if n == 0 { break }
                busy = true
                counters.add(.completions, n)
                counters.add(.batches)
                for i in 0..<n { dispatch(reactor.completions[i], now: now) }
                finishBatch()
                if n < reactor.completions.count { break }
            }
            if stream.connections.pausedCount > 0 && now.nanoseconds >= stream.nextResume {
                resumePausedStreams(now: now)
            }
            if now.nanoseconds >= nextTick {
                tick(now: now)
                nextTick = now.nanoseconds + 1_000_000_000
            }
        }
        shutdown()
    }

    /// End of a CQE batch: flush sends as GSO groups, give recycled buffers
    /// back to the kernel, re-arm receives that ended, submit.
    @inline(__always)
    mutating func finishBatch() {
        counters.add(.sendCalls, datagram.flushSends(&reactor))
        if stream.connections.dirtyCount > 0 { flushStreams() }
        reactor.buffers.publish()
        if datagram.needsRearm || stream.needsRearm { rearmReceives() }
        flushSubmissions()
    }

    /// Submits what the parts queued (the reactor's backlog first).
    @inline(__always)
    mutating func flushSubmissions() {
        reactor.flush()
    }

    /// Re-arms the receives and accepts that ended.
    mutating func rearmReceives() {
        if stream.needsRearm { stream.rearmListeners(&reactor) }
        if datagram.needsRearm { counters.add(.receiveRearms, datagram.rearm(&reactor)) }
    }
}

/// `x` with one decimal, without Foundation's formatter.
func oneDecimal(_ x: Double) -> String {
    let tenths = Int((x * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
