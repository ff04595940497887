import STUN

/// Everything the engine needs to start its workers, validated once at start.
/// The TURN rules (realm, users, policy, lifetimes) live in the TURN module's
/// own configuration; this is the I/O side.
public struct EngineConfig: Sendable {
    /// Addresses the listener sockets bind (each worker binds each one with SO_REUSEPORT).
    public var listen: [TransportAddress] = []
    /// Relay addresses per family, in the order given: relay sockets bind
    /// here, new allocations taking the addresses of their family in turn.
    /// An allocation of a family with no relay address is answered 440.
    public var relayIPsV4: [IPAddress] = []
    public var relayIPsV6: [IPAddress] = []
    /// The first relay address of each family (setting one makes it the only one).
    public var relayIPv4: IPAddress? {
        get { relayIPsV4.first }
        set { relayIPsV4 = newValue.map { [$0] } ?? [] }
    }
    public var relayIPv6: IPAddress? {
        get { relayIPsV6.first }
        set { relayIPsV6 = newValue.map { [$0] } ?? [] }
    }
    /// Address advertised in XOR-RELAYED-ADDRESS instead of the relay IPv4
    /// address (a server behind 1:1 NAT), like coturn's --external-ip.
    public var externalIPv4: IPAddress?
    public var minPort: UInt16 = 49152
    public var maxPort: UInt16 = 65535

    /// Worker threads; each owns one ring and a slice of the port range.
    public var workers = 1
    /// Pin worker k to online CPU k (mod CPU count).
    public var pinWorkers = false

    // Ring sizing (see docs/tuning.md).
    public var sqEntries: UInt32 = 1024
    public var cqEntries: UInt32 = 8192
    /// Provided receive buffers per worker (a power of two, at most 32768).
    public var buffers = 4096
    /// Bytes per receive buffer, including the kernel's recvmsg header, the
    /// source address and control space before the payload. Forwarders write
    /// the ChannelData header (4 bytes) or Data-indication header (up to 48)
    /// into that headroom, so a relayed datagram is never copied.
    public var bufferSize = 2048
    /// Concurrent SENDMSG operations per worker.
    public var sendOperations = 1024
    /// Most CQEs handled before the send batch is flushed.
    public var maxBatch = 256
    /// While traffic flows, wait up to this long for `maxBatch / 4`
    /// completions before handling them (0: handle each wake-up at once).
    /// Fewer wake-ups per datagram for many slow flows (VoIP), at up to this
    /// much added latency.
    public var batchWaitMicroseconds = 0

    // Forcing older kernel paths, so they can be tested on a new kernel.
    public var singleShotReceive = false
    public var noDeferTaskrun = false
    public var noSingleIssuer = false
    public var gso = true
    /// UDP_GRO on listener sockets (client side): a train of equal-size
    /// datagrams from one client arrives as one receive, walked datagram by
    /// datagram (each ChannelData frame keeps its own header).
    public var groClient = false
    /// UDP_GRO on relay sockets (peer side): the same for trains from peers;
    /// their datagrams go to the client with a ChannelData or Data-indication
    /// header inserted as a separate iovec.
    public var groPeer = false
    /// Large (64 KiB) receive buffers per worker for GRO sockets.
    public var groBuffers = 256

    // TURN over TCP and TLS (RFC 8656 §3.1). Relaying stays UDP.
    /// Addresses with a TCP listener (each worker binds each one with SO_REUSEPORT).
    public var tcpListen: [TransportAddress] = []
    /// Addresses with a TLS listener; needs `tls`.
    public var tlsListen: [TransportAddress] = []
    /// Certificate and key for the TLS listeners (replaced by `Engine.reload(tls:)`).
    public var tls: TLSServerContext? = nil
    /// Addresses with a DTLS listener (UDP; each worker binds each one with
    /// SO_REUSEPORT, so a client's datagrams reach one worker); needs `dtls`.
    /// Sessions share the limits of streams: `streamConnections` and
    /// `streamConnectionsPerIP` (counted apart from TCP/TLS connections),
    /// `tlsHandshakeSeconds`, and `streamIdleSeconds` for a session with no allocation.
    public var dtlsListen: [TransportAddress] = []
    /// Certificate and key for the DTLS listeners (replaced by `Engine.reload(dtls:)`).
    public var dtls: DTLSServerContext? = nil
    /// Client connections per worker (TCP and TLS together).
    public var streamConnections = 1024
    /// Connections from one IP address per worker (0: no limit).
    public var streamConnectionsPerIP = 256
    /// Bytes queued per connection for its client; past that, messages are
    /// dropped whole, and a client that reads nothing for `streamStallSeconds` is closed.
    public var streamSendQueue = 65_536
    /// A connection with no allocation and nothing received for this long is closed.
    public var streamIdleSeconds = 60
    /// A TLS handshake not finished this long after the connection is closed.
    public var tlsHandshakeSeconds = 10
    /// A connection whose queued bytes make no progress this long is closed.
    public var streamStallSeconds = 10

    /// The kernel fast path for established UDP channels (`--offload`).
    public var offload = OffloadMode.off
    /// Interfaces it attaches to (`--offload-interface`); empty: those that
    /// hold the listening and relay addresses.
    public var offloadInterfaces: [String] = []
    /// Dropping sources the per-source request limits refuse in the kernel,
    /// before their datagrams reach a UDP listener (`--kernel-source-filter`).
    public var kernelSourceFilter = KernelSourceFilterMode.auto

    /// The workers' completion source (`--backend`): io_uring, epoll, or
    /// io_uring when it can be set up (auto).
    public var backend = BackendChoice.auto

    /// Test-only: make ring setup fail as if io_uring were disabled, to check
    /// the operator-facing message.
    public var simulateRingFailure = false

    public init() {}

    /// Smallest receive buffer: the multishot RECVMSG layout puts about 210
    /// bytes (recvmsg header, a sockaddr_storage, control space) before the
    /// payload, and a payload must fit a 576-byte datagram at least.
    public static let minimumBufferSize = 1024

    /// The first problem with this configuration, in words an operator can act on, or nil.
    public func problem() -> String? {
        if listen.isEmpty && tcpListen.isEmpty && tlsListen.isEmpty && dtlsListen.isEmpty {
            return "no listening address (--listening-ip/--listening-port)"
        }
        if relayIPv4 == nil && relayIPv6 == nil { return "no relay address (--relay-ip)" }
        if minPort == 0 || minPort > maxPort { return "--min-port \(minPort) must be 1...--max-port (\(maxPort))" }
        if workers < 1 || workers > 1024 { return "--workers \(workers) must be 1...1024" }
        let ports = Int(maxPort) - Int(minPort) + 1
        if ports < workers { return "port range \(minPort)-\(maxPort) has \(ports) ports, fewer than --workers \(workers)" }
        if !(8...32768).contains(sqEntries) || sqEntries & (sqEntries - 1) != 0 {
            return "--sq-entries \(sqEntries) must be a power of two in 8...32768"
        }
        if cqEntries < sqEntries || cqEntries > 131072 || cqEntries & (cqEntries - 1) != 0 {
            return "--cq-entries \(cqEntries) must be a power of two, at least --sq-entries (\(sqEntries)), at most 131072"
        }
        if !(2...32768).contains(buffers) || buffers & (buffers - 1) != 0 {
            return "--buffers \(buffers) must be a power of two in 2...32768"
        }
        if bufferSize < Self.minimumBufferSize || bufferSize > 65536 {
            return "--buffer-size \(bufferSize) must be in \(Self.minimumBufferSize)...65536 (it includes about 210 bytes of headroom)"
        }
        if sendOperations < 16 || sendOperations > 65536 { return "--send-ops \(sendOperations) must be 16...65536" }
        if (groClient || groPeer) && singleShotReceive {
            return "--gro-client/--gro-peer need multishot receive; drop --no-multishot"
        }
        if !(2...4096).contains(groBuffers) || groBuffers & (groBuffers - 1) != 0 {
            return "--gro-buffers \(groBuffers) must be a power of two in 2...4096"
        }
        if !tlsListen.isEmpty && tls == nil { return "TLS listeners need a certificate and key (--cert, --pkey)" }
        if !dtlsListen.isEmpty && dtls == nil { return "DTLS listeners need a certificate and key (--cert, --pkey)" }
        if let both = dtlsListen.first(where: { listen.contains($0) }) {
            return "\(both) cannot be both a UDP and a DTLS listener (choose another --dtls-listening-port, or --no-dtls)"
        }
        if let both = tlsListen.first(where: { tcpListen.contains($0) }) {
            return "\(both) cannot be both a TCP and a TLS listener"
        }
        if !(1...65536).contains(streamConnections) { return "--tcp-connections \(streamConnections) must be 1...65536" }
        if streamConnectionsPerIP < 0 { return "--tcp-connections-per-ip \(streamConnectionsPerIP) must be 0 (no limit) or more" }
        if !(4096...(16 << 20)).contains(streamSendQueue) {
            return "--tcp-send-queue \(streamSendQueue) must be 4096...16777216 bytes"
        }
        for (name, v) in [
            ("--tcp-idle-timeout", streamIdleSeconds), ("--tls-handshake-timeout", tlsHandshakeSeconds),
            ("--tcp-stall-timeout", streamStallSeconds),
        ] where !(1...86_400).contains(v) {
            return "\(name) \(v) must be 1...86400 seconds"
        }
        if !(0...10_000).contains(batchWaitMicroseconds) {
            return "--batch-wait-us \(batchWaitMicroseconds) must be 0...10000"
        }
        if maxBatch < 1 || maxBatch > Int(cqEntries) { return "--max-batch \(maxBatch) must be 1...--cq-entries (\(cqEntries))" }
        return nil
    }
}
