import ArgumentParser

// The daemon's options, one `ParsableArguments` group per help section.
// Long names follow coturn where coturn has the same option (so a coturn
// command line or turnserver.conf carries over); coturn's short letters are
// kept for those too. Values stay text here and are checked, with messages
// an operator can act on, when `Settings` is built.
//
// Every option named here must also be listed in `OptionTable`, which the
// config-file reader uses (a test keeps the two in step).

/// Where uturn listens and which addresses and ports it relays from.
public struct ListeningOptions: ParsableArguments {
    @Option(
        name: [.customLong("listening-ip"), .customShort("L")],
        help: ArgumentHelp("Address to listen on for TURN over UDP; repeat for several (default: 127.0.0.1).",
                           valueName: "ip"))
    public var listeningIPs: [String] = []

    @Option(name: [.customLong("listening-port"), .customShort("p")], help: ArgumentHelp("UDP port to listen on.", valueName: "port"))
    public var listeningPort: Int = 3478

    @Option(
        name: [.customLong("relay-ip"), .customShort("E")],
        help: ArgumentHelp(
            "Address relay sockets bind; repeat for several (IPv4 and/or IPv6): new allocations take the addresses of their family in turn (default: the first listening address of each family).",
            valueName: "ip"))
    public var relayIPs: [String] = []

    @Option(
        name: [.customLong("external-ip"), .customShort("X")],
        help: ArgumentHelp(
            "Public IPv4 address advertised as the relayed address, for a server behind 1:1 NAT: public or public/private (private must be the IPv4 --relay-ip).",
            valueName: "ip[/ip]"))
    public var externalIP: String?

    @Option(name: .customLong("min-port"), help: ArgumentHelp("Lowest relay port.", valueName: "port"))
    public var minPort: Int = 49152

    @Option(name: .customLong("max-port"), help: ArgumentHelp("Highest relay port.", valueName: "port"))
    public var maxPort: Int = 65535

    @Option(name: .customLong("alt-listening-port"), help: ArgumentHelp("RFC 5780 alternate UDP port (default: --listening-port + 1, as coturn), bound on each of two listening addresses of a family when NAT behaviour discovery is on.", valueName: "port"))
    public var altListeningPort: Int?

    @Flag(name: .customLong("no-rfc5780"), help: "No RFC 5780 NAT behaviour discovery (by default on when two listening addresses of one family are given and UDP listens).")
    public var noRFC5780 = false

    public init() {}
}

/// Long-term credentials: static users and the TURN REST API secret.
public struct AuthOptions: ParsableArguments {
    @Option(name: [.customLong("realm"), .customShort("r")], help: ArgumentHelp("Realm for long-term credentials.", valueName: "realm"))
    public var realm: String = "uturn"

    @Option(
        name: [.customLong("user"), .customShort("u")],
        help: ArgumentHelp(
            "A static user, name:password, or name:0x<32 hex digits> (coturn's precomputed MD5 key; 64 digits for SHA-256). Repeatable.",
            valueName: "name:password"))
    public var users: [String] = []

    @Flag(name: [.customLong("lt-cred-mech"), .customShort("a")],
          help: "Long-term credential mechanism (accepted for coturn compatibility; it is the only mode).")
    public var longTermCredentials = false

    @Flag(name: .customLong("use-auth-secret"),
          help: "Accept TURN REST API usernames (expiry[:user]) signed with a --static-auth-secret.")
    public var useAuthSecret = false

    @Option(
        name: .customLong("static-auth-secret"),
        help: ArgumentHelp(
            "Shared secret for --use-auth-secret. Repeat to rotate: a password made with any of them is accepted.",
            valueName: "secret"))
    public var staticAuthSecrets: [String] = []

    @Option(name: .customLong("rest-api-separator"),
            help: ArgumentHelp("Character between expiry and user in REST API usernames.", valueName: "char"))
    public var restAPISeparator: String = ":"

    @Option(
        name: [.customLong("userdb"), .customLong("db"), .customShort("b")],
        help: ArgumentHelp(
            "coturn's SQLite user database: users (turnusers_lt), REST secrets (turn_secret) and peer ranges of --realm, re-read within a second of a change. Created when missing.",
            valueName: "path"))
    public var sqliteUserDB: String? = nil

    @Option(
        name: [.customLong("psql-userdb"), .customLong("sql-userdb"), .customShort("e")],
        help: ArgumentHelp(
            "coturn's PostgreSQL user database, a libpq connection string (\"host=127.0.0.1 dbname=turn user=turn password=…\"), polled every second.",
            valueName: "conninfo"))
    public var postgresUserDB: String? = nil

    @Option(
        name: [.customLong("redis-userdb"), .customShort("N")],
        help: ArgumentHelp(
            "coturn's Redis user database (\"ip=127.0.0.1 port=6379 dbname=0 password=…\"), coturn's key layout, polled every second.",
            valueName: "connection"))
    public var redisUserDB: String? = nil

    public init() {}
}

/// Which peers clients may reach through the relay.
public struct PeerOptions: ParsableArguments {
    @Flag(name: .customLong("allow-loopback-peers"),
          help: "Let clients relay to loopback addresses (127.0.0.0/8, ::1). For testing only: never in production.")
    public var allowLoopbackPeers = false

    @Option(
        name: .customLong("allowed-peer-ip"),
        help: ArgumentHelp(
            "Peer addresses to allow even if denied or private: an address, a CIDR (10.1.0.0/16) or a coturn range (10.1.0.0-10.1.255.255). Repeatable.",
            valueName: "cidr"))
    public var allowedPeerIPs: [String] = []

    @Option(
        name: .customLong("denied-peer-ip"),
        help: ArgumentHelp("Peer addresses to deny: an address, a CIDR or a coturn range. Repeatable.",
                           valueName: "cidr"))
    public var deniedPeerIPs: [String] = []

    @Flag(name: .customLong("no-multicast-peers"),
          help: "Deny multicast peers (accepted for coturn compatibility; uturn always does).")
    public var noMulticastPeers = false

    public init() {}
}

/// Lifetimes, quotas and protocol strictness.
public struct LimitOptions: ParsableArguments {
    @Option(name: [.customLong("user-quota"), .customShort("q")],
            help: ArgumentHelp("Most concurrent allocations per user (0: unlimited).", valueName: "n"))
    public var userQuota: Int = 0

    @Option(name: [.customLong("total-quota"), .customShort("Q")],
            help: ArgumentHelp("Most concurrent allocations on the server (0: unlimited).", valueName: "n"))
    public var totalQuota: Int = 0

    @Option(name: .customLong("max-allocate-lifetime"), help: ArgumentHelp("Longest allocation lifetime a client may ask for, in seconds.", valueName: "seconds"))
    public var maxAllocateLifetime: Int = 3600

    @Option(name: .customLong("stale-nonce"), help: ArgumentHelp("Seconds a nonce stays valid before the client must re-authenticate (438).", valueName: "seconds"))
    public var staleNonce: Int = 600

    @Flag(name: .customLong("strict-channel-numbers"),
          help: "Refuse channel numbers 0x5000-0x7FFF (outside RFC 8656's range; RFC 5766 clients use them).")
    public var strictChannelNumbers = false

    @Option(name: .customLong("drain-timeout"),
            help: ArgumentHelp("On SIGTERM, seconds to let current allocations run before exiting.", valueName: "seconds"))
    public var drainTimeout: Int = 0

    @Option(name: .customLong("max-bps"),
            help: ArgumentHelp("Most bytes per second one allocation may relay in each direction (client to peer, peer to client), over every client transport and RFC 6062 TCP relays; datagrams over it are dropped, byte streams are paused (not read) until it allows more (0: unlimited). Allocations under a limit are not offloaded.", valueName: "bytes"))
    public var maxBps: Int = 0

    @Option(name: .customLong("bps-capacity"),
            help: ArgumentHelp("Most bytes per second the whole server relays in each direction (0: unlimited); see --bps-capacity-policy.", valueName: "bytes"))
    public var bpsCapacity: Int = 0

    @Option(name: .customLong("bps-capacity-policy"),
            help: ArgumentHelp("At --bps-capacity: refuse (each allocation reserves --max-bps; an Allocate that would overbook the capacity gets 486) or share (the capacity is split evenly between the allocations carrying traffic).", valueName: "policy"))
    public var bpsCapacityPolicy: String = "refuse"

    @Option(name: .customLong("user-max-bps"),
            help: ArgumentHelp("Most bytes per second one user's allocations relay together in each direction, split evenly between them (0: unlimited).", valueName: "bytes"))
    public var userMaxBps: Int = 0

    @Option(name: .customLong("max-pps"),
            help: ArgumentHelp("Most packets per second one allocation may relay, both directions together; more are dropped (0: unlimited).", valueName: "packets"))
    public var maxPps: Int = 0

    @Option(name: .customLong("max-new-peers-per-second"),
            help: ArgumentHelp("Most new peer addresses (permissions, by CreatePermission or ChannelBind) one allocation may add per second; more get 508 (0: unlimited).", valueName: "n"))
    public var maxNewPeersPerSecond: Int = 0

    public init() {}
}

/// TURN over TCP and TLS (RFC 8656 §3.1): listeners, certificate, and the
/// limits that keep one connection from costing more than its share.
public struct StreamOptions: ParsableArguments {
    @Flag(name: .customLong("no-tcp"), help: "No TCP listener (by default each listening address also takes TCP on --listening-port).")
    public var noTCP = false

    @Flag(name: .customLong("no-tls"), help: "No TLS listener, even with --cert and --pkey.")
    public var noTLS = false

    @Flag(name: .customLong("no-tcp-relay"), help: "Refuse RFC 6062 TCP allocations (REQUESTED-TRANSPORT TCP gets 442); by default clients over TCP or TLS may relay to TCP peers.")
    public var noTCPRelay = false

    @Option(name: .customLong("cert"), help: ArgumentHelp("PEM certificate chain for TURN over TLS and DTLS (with --pkey; reloaded on SIGHUP).", valueName: "path"))
    public var cert: String?

    @Option(name: .customLong("pkey"), help: ArgumentHelp("PEM private key of --cert.", valueName: "path"))
    public var pkey: String?

    @Option(name: .customLong("tls-listening-port"), help: ArgumentHelp("TLS port on each listening address, when --cert and --pkey are given.", valueName: "port"))
    public var tlsListeningPort: Int = 5349

    @Option(name: .customLong("dtls-listening-port"), help: ArgumentHelp("DTLS (UDP) port on each listening address, when --cert and --pkey are given (default: the --tls-listening-port number). DTLS sessions share --tcp-connections, --tcp-connections-per-ip (counted apart from TCP/TLS), --tls-handshake-timeout and --tcp-idle-timeout.", valueName: "port"))
    public var dtlsListeningPort: Int?

    @Option(name: .customLong("tcp-connections"), help: ArgumentHelp("Most TCP and TLS client connections per worker.", valueName: "n"))
    public var tcpConnections: Int = 1024

    @Option(name: .customLong("tcp-connections-per-ip"), help: ArgumentHelp("Most connections from one client IP address per worker (0: no limit).", valueName: "n"))
    public var tcpConnectionsPerIP: Int = 256

    @Option(name: .customLong("tcp-send-queue"), help: ArgumentHelp("Bytes queued per connection for a client that reads slowly; past it, messages are dropped whole.", valueName: "bytes"))
    public var tcpSendQueue: Int = 65_536

    @Option(name: .customLong("tcp-idle-timeout"), help: ArgumentHelp("Seconds a connection may stay silent with no allocation before it is closed.", valueName: "seconds"))
    public var tcpIdleTimeout: Int = 60

    @Option(name: .customLong("tls-handshake-timeout"), help: ArgumentHelp("Seconds a TLS or DTLS handshake may take before the connection (or DTLS session) is closed.", valueName: "seconds"))
    public var tlsHandshakeTimeout: Int = 10

    @Option(name: .customLong("tcp-stall-timeout"), help: ArgumentHelp("Seconds a client may read nothing while bytes wait for it before it is closed.", valueName: "seconds"))
    public var tcpStallTimeout: Int = 10

    public init() {}
}

/// coturn's switch for the DTLS listener (kept in its own group, where coturn command lines expect it).
public struct CompatibilityOptions: ParsableArguments {
    @Flag(name: .customLong("no-dtls"), help: "No DTLS listener, even with --cert and --pkey.")
    public var noDTLS = false

    public init() {}
}

public enum LogLevel: String, CaseIterable, ExpressibleByArgument, Sendable, Comparable {
    case debug, info, notice, warning, error

    var rank: Int {
        switch self {
        case .debug: 0
        case .info: 1
        case .notice: 2
        case .warning: 3
        case .error: 4
        }
    }
    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

/// Where log lines go and how many, and the metrics endpoint.
public struct LoggingOptions: ParsableArguments {
    @Option(name: [.customLong("log-file"), .customShort("l")],
            help: ArgumentHelp("Log to this file (appended), or 'stdout' / 'stderr' (default: stderr).", valueName: "path"))
    public var logFile: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("Least severe level logged.", valueName: "level"))
    public var logLevel: LogLevel = .info

    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics, e.g. 127.0.0.1:9641 or [::1]:9641 (default: off). Unauthenticated: keep it on a private address.",
            valueName: "addr:port"))
    public var metricsListen: String?

    public init() {}
}

/// The io_uring engine: threads, ring sizes, and switches that force older kernel paths.
public struct EngineOptions: ParsableArguments {
    @Option(name: .customLong("backend"), help: ArgumentHelp("Workers' I/O backend: auto (io_uring where it can be set up and probed, else epoll, with one log line saying why: EPERM from a seccomp profile or kernel.io_uring_disabled, ENOSYS from a kernel or runtime without io_uring, ENOMEM from the memlock limit), io_uring (or refuse to start, naming the cause and the fix), epoll. Restart only; the uturn_backend_info metric says which runs.", valueName: "mode"))
    public var backend: String = "auto"

    @Option(name: .customLong("workers"), help: ArgumentHelp("Worker threads, one io_uring (or epoll) each (default: online CPUs).", valueName: "n"))
    public var workers: Int?

    @Flag(name: .customLong("pin-workers"), help: "Pin worker k to online CPU k.")
    public var pinWorkers = false

    @Option(name: .customLong("sq-entries"), help: ArgumentHelp("Submission queue entries per ring (power of two).", valueName: "n"))
    public var sqEntries: Int = 1024

    @Option(name: .customLong("cq-entries"), help: ArgumentHelp("Completion queue entries per ring (power of two, >= --sq-entries).", valueName: "n"))
    public var cqEntries: Int = 8192

    @Option(name: .customLong("buffers"), help: ArgumentHelp("Provided receive buffers per worker (power of two).", valueName: "n"))
    public var buffers: Int = 4096

    @Option(name: .customLong("buffer-size"), help: ArgumentHelp("Bytes per receive buffer, including about 210 bytes of headroom.", valueName: "bytes"))
    public var bufferSize: Int = 2048

    @Option(name: .customLong("send-ops"), help: ArgumentHelp("Concurrent send operations per worker.", valueName: "n"))
    public var sendOperations: Int = 1024

    @Option(name: .customLong("max-batch"), help: ArgumentHelp("Most completions handled before queued sends are flushed.", valueName: "n"))
    public var maxBatch: Int = 256

    @Option(name: .customLong("batch-wait-us"), help: ArgumentHelp("While traffic flows, wait up to this many microseconds for a quarter of --max-batch completions before handling them (0: at once). Fewer wake-ups for many slow flows, at that much added latency.", valueName: "us"))
    public var batchWaitUs: Int = 0

    @Flag(name: .customLong("no-multishot"), help: "Use single-shot receives (the Linux 5.19 path) instead of multishot.")
    public var noMultishot = false

    @Flag(name: .customLong("no-defer-taskrun"), help: "Do not set IORING_SETUP_DEFER_TASKRUN.")
    public var noDeferTaskrun = false

    @Flag(name: .customLong("no-single-issuer"), help: "Do not set IORING_SETUP_SINGLE_ISSUER.")
    public var noSingleIssuer = false

    @Flag(name: .customLong("no-gso"), help: "Send each datagram alone instead of batching with UDP_SEGMENT.")
    public var noGSO = false

    @Flag(name: .customLong("gro-client"), help: "Enable UDP_GRO on listener sockets: trains from coalescing clients arrive as one receive.")
    public var groClient = false

    @Flag(name: .customLong("gro-peer"), help: "Enable UDP_GRO on relay sockets: trains from coalescing peers arrive as one receive.")
    public var groPeer = false

    @Option(name: .customLong("gro-buffers"), help: ArgumentHelp("Large (64 KiB) receive buffers per worker for GRO sockets (power of two).", valueName: "n"))
    public var groBuffers: Int = 256

    @Option(name: .customLong("offload"), help: ArgumentHelp("Kernel fast path for established UDP channels (IPv4, IPv6, mixed): off, auto (XDP where it attaches, else TC, else user space, with a log line), tc (TC ingress, or refuse to start), xdp (XDP, native where the driver has it, else generic; or refuse to start). Needs CAP_BPF and CAP_NET_ADMIN.", valueName: "mode"))
    public var offload: String = "off"

    @Option(name: .customLong("offload-interface"), help: ArgumentHelp("Interface the fast path attaches to; repeat for several (default: the interfaces holding the listening and relay addresses).", valueName: "name"))
    public var offloadInterface: [String] = []

    @Option(name: .customLong("kernel-source-filter"), help: ArgumentHelp("Drop sources over the per-source request limits (--failed-request-rate, --failed-request-rate-total, --binding-request-rate) in the kernel too: a BPF socket filter on each UDP listening socket drops the blocked client address and port until its bucket refills, before the datagram is queued; a client address and port with no allocation that sends more datagrams no one answers (ChannelData, unparsable bytes) than --failed-request-rate loses those, not its requests, until it allocates. off, auto (loaded at start if it can be, else user space with a log line; attached while a per-source limit is on, also after a reload turns one on or off), on (always attached, or refuse to start). Needs CAP_BPF. The mode is fixed at start.", valueName: "mode"))
    public var kernelSourceFilter: String = "auto"

    @Flag(name: .customLong("simulate-io-uring-failure"),
          help: ArgumentHelp("Test only: fail ring setup as if io_uring were disabled.", visibility: .hidden))
    public var simulateIOUringFailure = false

    public init() {}
}

/// The admin API (list and end sessions, drain, reload) and its bearer token.
public struct AdminOptions: ParsableArguments {
    @Option(
        name: .customLong("admin-listen"),
        help: ArgumentHelp(
            "Serve the admin API (JSON over HTTP; uturnctl talks to it) at ADDR:PORT, e.g. 127.0.0.1:9642 (default: off). Needs --admin-token-file. Plain HTTP: keep it on loopback or a private address.",
            valueName: "addr:port"))
    public var adminListen: String?

    @Option(
        name: .customLong("admin-token-file"),
        help: ArgumentHelp(
            "File holding the admin API's bearer token (one line; surrounding whitespace ignored). uturnd refuses to start when it is unreadable or empty; SIGHUP reads it again.",
            valueName: "path"))
    public var adminTokenFile: String?

    @Option(
        name: .customLong("admin-cert"),
        help: ArgumentHelp(
            "Serve the admin API over HTTPS with this PEM certificate chain (with --admin-pkey; default: plain HTTP). SIGHUP reads it again.",
            valueName: "path"))
    public var adminCert: String?

    @Option(
        name: .customLong("admin-pkey"),
        help: ArgumentHelp("The PEM private key of --admin-cert.", valueName: "path"))
    public var adminPkey: String?

    public init() {}
}
