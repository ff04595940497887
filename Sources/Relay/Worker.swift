import Glibc
import STUN
import TURN
import URing

/// One worker: a thread that owns an io_uring, a provided buffer ring, one
/// listener socket per listening address (SO_REUSEPORT, so the kernel hashes
/// each client 5-tuple to one worker for life), the relay sockets of its
/// allocations, and its TURN tables. Nothing here is shared with other
/// workers, so the packet path takes no lock.
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
    struct Listener {
        var fd: Int32
        var local: TransportAddress
    }

    let index: Int
    let control: WorkerControl
    /// Every worker's control block, this one's included (handing a
    /// connection to another worker; control path only).
    let siblings: [WorkerControl]
    let log: EngineLog
    var ring: Ring
    var buffers: ReceiveBuffers
    let header: ReceiveMessageHeader
    /// Single-shot (5.19) path only: one header per listener and relay slot.
    let singleShotHeaders: UnsafeMutablePointer<ReceiveMessageHeader>?
    let singleShotHeaderCount: Int
    var batcher: SendBatcher
    var turn: TURNServer
    var relays: RelaySockets
    var counters = WorkerCounters()
    let listeners: UnsafeMutableBufferPointer<Listener>
    let completions: UnsafeMutableBufferPointer<Completion>
    /// Listener slots whose receive ended and must be re-armed.
    let rearmListeners: UnsafeMutablePointer<Bool>
    /// Relay slots whose receive ended (slot, generation) awaiting re-arm.
    var rearmRelays: [UserData] = []
    var pendingRearm = false
    /// Response scratch for the control path (a STUN response fits in 548 bytes).
    let response: UnsafeMutableRawBufferPointer
    let multishot: Bool
    var gsoEnabled: Bool
    /// UDP_GRO on listener sockets (client side) / relay sockets (peer side):
    /// those receives draw large buffers and may hold a train of datagrams.
    let groClient: Bool
    let groPeer: Bool
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

    // TURN over TCP/TLS (Worker+Stream.swift).
    let streamListeners: UnsafeMutableBufferPointer<StreamListener>
    var streams: StreamConnections
    let streamLimits: StreamLimits
    var tlsContext: TLSServerContext?
    /// The connection an allocation was made over, by allocation slot
    /// (valid when that connection's `allocation` is the same ID).
    let allocationStream: UnsafeMutablePointer<UInt32>
    /// A TLS message's plaintext is assembled here, then encrypted.
    let plainScratch: UnsafeMutableRawBufferPointer
    /// Ciphertext taken from a TLS session on its way into an outbox.
    let cipherScratch: UnsafeMutableRawBufferPointer
    var lastStreamRefusalLog: UInt64 = 0
    /// Connections waiting for their last send before moving to the worker
    /// that owns their ConnectionBind's CONNECTION-ID (rare; control path).
    var pendingHandoffs: [(slot: UInt32, owner: Int, request: [UInt8])] = []

    struct StreamLimits {
        var perSource: Int
        var idleSeconds: Int
        var handshakeSeconds: Int
        var stallSeconds: Int
    }

    /// Size of a GRO train buffer: the most one coalesced receive can carry.
    static let largeBufferSize = 65_536 + 512

    init(
        index: Int, config: EngineConfig, turnConfig: TURNConfiguration, quotas: AllocationQuotas,
        control: WorkerControl, siblings: [WorkerControl], log: @escaping EngineLog
    ) throws(EngineError) {
        var options = RingOptions()
        options.submissionEntries = config.sqEntries
        options.completionEntries = config.cqEntries
        if config.noDeferTaskrun { options.highestRung = .singleIssuerCoopTaskrun }
        if config.noSingleIssuer { options.highestRung = .coopTaskrun }
        options.allowMultishotReceive = !config.singleShotReceive
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
        let anyGRO = config.groClient || config.groPeer
        let largeCount = anyGRO ? config.groBuffers : 2
        let largeSize = anyGRO ? Self.largeBufferSize : 4096
        let buffers: ReceiveBuffers
        do {
            buffers = try ReceiveBuffers(
                ring: &ring, smallCount: config.buffers, smallSize: config.bufferSize, largeCount: largeCount,
                largeSize: largeSize)
        } catch {
            throw EngineError(
                "worker \(index): cannot register receive buffers (\(config.buffers) × \(config.bufferSize) B, \(largeCount) × \(largeSize) B): \(error). \(error.explanation)")
        }
        let waker: Waker
        do { waker = try ring.makeWaker() } catch { throw EngineError("worker \(index): eventfd: \(error)") }
        // Listeners: each worker binds every listening address with SO_REUSEPORT.
        // (All throwing work happens before any stored property is set.)
        let boundListeners = UnsafeMutableBufferPointer<Listener>.allocate(capacity: config.listen.count)
        for (i, address) in config.listen.enumerated() {
            do {
                let s = try UDPSocket.bound(to: SocketAddress(address), reusePort: true)
                if config.groClient { try s.setUDPGRO(true) }
                boundListeners.initializeElement(at: i, to: Listener(fd: s.rawValue, local: address))
            } catch {
                for j in 0..<i { close(boundListeners[j].fd) }
                boundListeners.deallocate()
                throw EngineError("worker \(index): cannot listen on udp \(address): \(error)")
            }
        }
        let streamAddresses = config.tcpListen.map { ($0, false) } + config.tlsListen.map { ($0, true) }
        let boundStreamListeners = UnsafeMutableBufferPointer<StreamListener>.allocate(capacity: streamAddresses.count)
        for (i, (address, tls)) in streamAddresses.enumerated() {
            do {
                let s = try StreamSocket.listening(on: SocketAddress(address), reusePort: true)
                boundStreamListeners.initializeElement(at: i, to: StreamListener(fd: s.rawValue, local: address, tls: tls))
            } catch {
                for j in 0..<i { close(boundStreamListeners[j].fd) }
                boundStreamListeners.deallocate()
                for j in 0..<boundListeners.count { close(boundListeners[j].fd) }
                boundListeners.deallocate()
                throw EngineError("worker \(index): cannot listen on \(tls ? "tls" : "tcp") \(address): \(error)")
            }
        }
        control.waker.withLock { $0 = waker }
        self.index = index
        self.control = control
        self.siblings = siblings
        batchWait = .microseconds(config.batchWaitMicroseconds)
        batchMinComplete = max(2, config.maxBatch / 4)
        self.log = log
        multishot = features.useMultishotReceive
        self.ring = ring
        self.buffers = buffers
        header = ReceiveMessageHeader()
        gsoEnabled = config.gso
        groClient = config.groClient
        groPeer = config.groPeer
        batcher = SendBatcher(capacity: config.sendOperations, gso: config.gso)
        turn = TURNServer(configuration: turnConfig, quotas: quotas, now: Self.monotonicNow())
        let tagBits = Self.connectionIDTagBits(workers: config.workers)
        if tagBits > 0 { turn.setConnectionIDTag(UInt32(index), bits: tagBits) }
        let relayCapacity = turnConfig.limits.maxAllocations * 2
        let slice = PortRange.slice(min: config.minPort, max: config.maxPort, workers: config.workers, index: index)
        relays = RelaySockets(capacity: relayCapacity, ports: slice, config: config, workerIndex: index)
        response = .allocate(byteCount: 2048, alignment: 8)
        completions = .allocate(capacity: config.maxBatch)
        rearmRelays.reserveCapacity(relayCapacity)
        transactionCounter = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15

        listeners = boundListeners
        streamListeners = boundStreamListeners
        let streamCapacity = streamAddresses.isEmpty ? 0 : config.streamConnections
        streams = StreamConnections(capacity: streamCapacity, outboxCapacity: config.streamSendQueue)
        streamLimits = StreamLimits(
            perSource: config.streamConnectionsPerIP, idleSeconds: config.streamIdleSeconds,
            handshakeSeconds: config.tlsHandshakeSeconds, stallSeconds: config.streamStallSeconds)
        tlsContext = config.tls
        allocationStream = .allocate(capacity: turnConfig.limits.maxAllocations)
        allocationStream.initialize(repeating: UInt32.max, count: turnConfig.limits.maxAllocations)
        let tlsScratch = config.tlsListen.isEmpty ? 64 : StreamFraming.maxFrameLength + 64
        plainScratch = .allocate(byteCount: tlsScratch, alignment: 16)
        cipherScratch = .allocate(byteCount: config.tlsListen.isEmpty ? 64 : 20_480, alignment: 16)
        rearmListeners = .allocate(capacity: config.listen.count)
        rearmListeners.initialize(repeating: false, count: config.listen.count)
        if multishot {
            singleShotHeaders = nil
            singleShotHeaderCount = 0
        } else {
            let n = config.listen.count + relayCapacity
            let headers = UnsafeMutablePointer<ReceiveMessageHeader>.allocate(capacity: n)
            for i in 0..<n { (headers + i).initialize(to: ReceiveMessageHeader(controlCapacity: 0)) }
            singleShotHeaders = headers
            singleShotHeaderCount = n
        }
        if index == 0 { log(.info, "io_uring: \(features)") }
    }

    deinit {
        for i in 0..<listeners.count { close(listeners[i].fd) }
        listeners.deallocate()
        for i in 0..<streamListeners.count where streamListeners[i].fd >= 0 { close(streamListeners[i].fd) }
        streamListeners.deallocate()
        allocationStream.deallocate()
        plainScratch.deallocate()
        cipherScratch.deallocate()
        rearmListeners.deallocate()
        completions.deallocate()
        response.deallocate()
        if let h = singleShotHeaders {
            h.deinitialize(count: singleShotHeaderCount)
            h.deallocate()
        }
    }

    static func monotonicNow() -> MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    // MARK: The loop

    mutating func run() {
        for i in 0..<listeners.count { armListener(i) }
        for i in 0..<streamListeners.count { armStreamListener(i) }
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
            var minComplete = 1
            if busy && batchWait > .zero {
                wait = min(wait, batchWait)
                minComplete = batchMinComplete
            }
            do { _ = try ring.submitAndWait(minComplete: minComplete, timeout: wait) } catch {
                log(.error, "worker \(index): io_uring_enter failed: \(error)")
                break
            }
            now = Self.monotonicNow()
            nowSeconds = now.seconds
            busy = false
            // Drain what is ready, a bounded batch at a time, so sends are
            // flushed at least every `maxBatch` completions.
            while true {
                let n = ring.reapCompletions(into: completions)
                if n == 0 { break }
                busy = true
                counters.add(.completions, n)
                counters.add(.batches)
                for i in 0..<n { dispatch(completions[i], now: now) }
                finishBatch()
                if n < completions.count { break }
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
        flushSends()
        if streams.dirtyCount > 0 { flushStreams() }
        buffers.publish()
        if pendingRearm { rearmReceives() }
        flushSubmissions()
    }

    @inline(__always)
    mutating func flushSubmissions() {
        if ring.pendingSubmissions > 0 { _ = try? ring.submit() }
    }
}

/// `x` with one decimal, without Foundation's formatter.
func oneDecimal(_ x: Double) -> String {
    let tenths = Int((x * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
