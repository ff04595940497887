import Glibc
import STUN
import TURN
import URing

/// A TCP or TLS listener of one worker (SO_REUSEPORT: every worker has one
/// per address, and the kernel spreads connections between them).
struct StreamListener {
    var fd: Int32
    var local: TransportAddress
    var tls: Bool
    /// Its multishot ACCEPT ended and must be armed again: at the end of the
    /// batch, or at the next tick when the kernel was out of descriptors or
    /// memory (`acceptAtTick`), so a failing accept is not retried in a loop.
    var needsAccept = false
    var acceptAtTick = false
}

/// The worker's TURN-over-TCP/TLS side (RFC 8656 §3.1): its stream
/// listeners, the connection table (client connections and RFC 6062 data
/// connections), the TLS context, the limits, and the scratch TLS needs.
///
/// It owns the connections and everything done to them: accepting
/// (StreamPart+Accept), cutting received bytes into frames
/// (StreamPart+Frames), queueing and sending (StreamPart+Send), closing and
/// the timers (StreamPart+Close). What it cannot decide alone it hands to the
/// worker: frames, pulled one at a time with `nextFrame` and routed through
/// TURN; and `events` (a connection closed, one is ready to move to another
/// worker), drained by the worker after each call.
struct StreamPart: ~Copyable {
    /// What the worker must act on after a call into the part.
    enum Event {
        /// A connection was closed (already logged, shut down and closed):
        /// its allocation or its data pair ends with it.
        case closed(ClosedConnection)
        /// A connection marked for hand-off has no send in flight any more.
        case readyToHandOff(UInt32)
        /// An operation of a closed connection to cancel (its receive).
        case cancel(UserData)
    }

    /// What is left of a closed connection for the worker.
    struct ClosedConnection {
        var slot: UInt32
        var generation: UInt32
        var fiveTuple: FiveTuple
        var role: StreamConnection.Role
        /// The allocation made over it (client connections).
        var allocation: AllocationID?
        /// Its data pair (RFC 6062), or .max.
        var pair: UInt32
    }

    struct Limits {
        var perSource: Int
        var idleSeconds: Int
        var handshakeSeconds: Int
        var stallSeconds: Int
    }

    let listeners: UnsafeMutableBufferPointer<StreamListener>
    var connections: StreamConnections
    let limits: Limits
    var tlsContext: TLSServerContext?
    /// The connection an allocation was made over, by allocation slot
    /// (valid when that connection's `allocation` is the same ID).
    let allocationStream: UnsafeMutablePointer<UInt32>
    /// A TLS message's plaintext is assembled here, then encrypted.
    let plainScratch: UnsafeMutableRawBufferPointer
    /// Ciphertext taken from a TLS session on its way into an outbox.
    let cipherScratch: UnsafeMutableRawBufferPointer
    /// Refusals and accept errors are logged at most once a second.
    var lastRefusalLog: UInt64 = 0
    /// A listener's accept ended and waits to be armed again.
    var needsRearm = false
    /// Monotonic seconds at the worker's last wake-up.
    var nowSeconds: UInt32 = 0
    /// When the worker looks at the paused connections next (monotonic
    /// nanoseconds; .max: none paused). See StreamPart+Pause.swift.
    var nextResume: UInt64 = .max
    /// Client connections receive one buffer at a time, as data
    /// connections do, rather than multishot: set under a byte limit, so
    /// that a connection paused for it stops reading within one buffer (a
    /// multishot receive drains the whole socket buffer before its cancel
    /// lands, overshooting the rate by as much).
    var singleShotClients = false
    /// Events for the worker, oldest first (room for one per connection
    /// reserved at start; the worker empties it after every call).
    var events: [Event] = []
    let counters: CounterView
    let log: EngineLog
    let workerIndex: Int

    /// Binds every TCP and TLS listening address (SO_REUSEPORT).
    init(
        config: EngineConfig, maxAllocations: Int, workerIndex: Int, counters: CounterView, log: @escaping EngineLog
    ) throws(EngineError) {
        let addresses = config.tcpListen.map { ($0, false) } + config.tlsListen.map { ($0, true) }
        let bound = UnsafeMutableBufferPointer<StreamListener>.allocate(capacity: addresses.count)
        for (i, (address, tls)) in addresses.enumerated() {
            do {
                let s = try StreamSocket.listening(on: SocketAddress(address), reusePort: true)
                bound.initializeElement(at: i, to: StreamListener(fd: s.rawValue, local: address, tls: tls))
            } catch {
                for j in 0..<i { Syscall.close(bound[j].fd) }
                bound.deallocate()
                throw EngineError("worker \(workerIndex): cannot listen on \(tls ? "tls" : "tcp") \(address): \(error)")
            }
        }
        listeners = bound
        connections = StreamConnections(
            capacity: addresses.isEmpty ? 0 : config.streamConnections, outboxCapacity: config.streamSendQueue)
        limits = Limits(
            perSource: config.streamConnectionsPerIP, idleSeconds: config.streamIdleSeconds,
            handshakeSeconds: config.tlsHandshakeSeconds, stallSeconds: config.streamStallSeconds)
        tlsContext = config.tls
        allocationStream = .allocate(capacity: maxAllocations)
        allocationStream.initialize(repeating: UInt32.max, count: maxAllocations)
        let tlsScratch = config.tlsListen.isEmpty ? 64 : StreamFraming.maxFrameLength + 64
        plainScratch = .allocate(byteCount: tlsScratch, alignment: 16)
        cipherScratch = .allocate(byteCount: config.tlsListen.isEmpty ? 64 : 20_480, alignment: 16)
        events.reserveCapacity(connections.capacity + 16)
        self.counters = counters
        self.log = log
        self.workerIndex = workerIndex
    }

    deinit {
        for i in 0..<listeners.count where listeners[i].fd >= 0 { Syscall.close(listeners[i].fd) }
        listeners.deallocate()
        allocationStream.deallocate()
        plainScratch.deallocate()
        cipherScratch.deallocate()
    }

    /// The open client connection an allocation was made over, if any.
    func connection(of allocation: AllocationID) -> UInt32? {
        let slot = allocationStream[Int(allocation.slot)]
        guard Int(slot) < connections.capacity, connections.slots[Int(slot)].fd >= 0,
            connections.slots[Int(slot)].allocation == allocation
        else { return nil }
        return slot
    }

    /// Records that `allocation` was made over connection `slot`.
    mutating func noteAllocation(_ allocation: AllocationID, madeOver slot: UInt32) {
        connections.slots[Int(slot)].allocation = allocation
        allocationStream[Int(allocation.slot)] = slot
    }

    /// The allocation is gone (deleted or expired): its connection has none
    /// now, and is closed when idle for `limits.idleSeconds`.
    mutating func allocationGone(_ allocation: AllocationID) {
        if let slot = connection(of: allocation) { connections.slots[Int(slot)].allocation = nil }
    }

    /// The connection in `slot` (a copy, for the worker's decisions).
    @inline(__always)
    subscript(_ slot: UInt32) -> StreamConnection { connections.slots[Int(slot)] }

    /// Where a CONNECT from `slot` keeps its peer address (the kernel reads
    /// it until the completion, so it lives in the table, not on the stack).
    func connectAddress(_ slot: UInt32) -> UnsafeMutablePointer<sockaddr_storage> {
        connections.connectAddresses + Int(slot)
    }

    func isOpen(_ slot: UInt32, generation: UInt32) -> Bool { connections.isOpen(slot, generation: generation) }

    /// How a connection is named in the log: its client, or its peer.
    func name(_ c: StreamConnection) -> String {
        switch c.role {
        case .client: "connection \(c.fiveTuple.client) \(c.fiveTuple.transport == .tls ? "TLS" : "TCP")"
        case .peer: "peer connection \(c.fiveTuple.client) on \(c.fiveTuple.server)"
        case .clientData: "client data connection \(c.fiveTuple.client) \(c.fiveTuple.transport == .tls ? "TLS" : "TCP")"
        }
    }
}
