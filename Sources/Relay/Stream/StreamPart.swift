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
/// The code that drives it is in Worker+StreamReceive.swift and
/// Worker+StreamSend.swift; everything it holds is in here.
struct StreamPart: ~Copyable {
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

    /// Binds every TCP and TLS listening address (SO_REUSEPORT).
    init(config: EngineConfig, maxAllocations: Int, workerIndex: Int) throws(EngineError) {
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
}
