import STUN

/// The immutable settings one server snapshot runs with, shared (by value)
/// by every worker. A reload builds a new one and each worker takes it at
/// its next control request (`TURNServer.configuration`).
public struct TURNConfiguration: Sendable {
    public var credentials: CredentialStore
    public var peerPolicy: PeerPolicy
    /// Stateless nonce codec; every worker must hold the same secret.
    public var nonces: NonceCodec
    /// Allocation lifetime when the client asks for less or nothing (RFC: 600 s).
    public var defaultLifetime: UInt32 = 600
    /// `--max-allocate-lifetime` (default 3600 s).
    public var maxLifetime: UInt32 = 3600
    /// Offer SHA-256 (PASSWORD-ALGORITHMS, MESSAGE-INTEGRITY-SHA256) in the nonce cookie.
    public var offerSHA256 = true
    /// Accept USERHASH instead of USERNAME (static users only).
    public var acceptUserHash = false
    /// Refuse channel numbers 0x5000–0x7FFF (RFC 8656's range) with 400.
    /// Off by default: RFC 5766 clients such as coturn's `turnutils_uclient` use them.
    public var strictChannelNumbers = false
    /// Whether the engine can send with DF set; when false, DONT-FRAGMENT gets 420.
    public var supportsDontFragment = true
    /// TURN TCP allocations (RFC 6062): Allocate with REQUESTED-TRANSPORT TCP
    /// from a TCP or TLS client, and the Connect and ConnectionBind requests.
    /// Off: TCP gets 442 and those methods 400, as a server without RFC 6062
    /// answers. Needs an engine whose `RelayPortProvider` opens TCP relays.
    public var tcpRelay = false
    /// UDP allocations (REQUESTED-TRANSPORT UDP). Off (`--no-udp-relay`):
    /// they get 442, so only RFC 6062 TCP allocations are made.
    public var udpRelay = true
    /// `--stun-only`: a STUN server only. Binding is answered; every other
    /// request and every Send indication is dropped unanswered (coturn
    /// ignores them too, so a TURN client times out instead of retrying).
    public var stunOnly = false
    /// Answer Binding requests. Off (`--no-stun`): a TURN server only;
    /// Binding requests are dropped unanswered, as coturn does.
    public var answersBinding = true
    /// `--secure-stun`: Binding needs long-term credentials, like a TURN
    /// request (401 with a nonce first; the answer is signed).
    public var authenticatesBinding = false
    /// `--check-origin-consistency`: requests on an allocation must carry
    /// the ORIGIN its Allocate carried (none if it had none), else 441.
    public var checkOriginConsistency = false
    /// Relay families this server can open.
    public var relayFamilies: Set<IPAddress.Family> = [.v4, .v6]
    /// Where new Allocates are redirected with 300 (ALTERNATE-SERVER), and when.
    public var alternates = AlternateServers()
    /// One alternate that takes every Allocate (the policy `always`).
    public var alternateServer: TransportAddress? {
        get { alternates.servers.first }
        set { alternates = AlternateServers(servers: newValue.map { [$0] } ?? [], policy: .always) }
    }
    /// RFC 5780 (NAT behaviour discovery) for Binding over UDP; off by default.
    public var natDiscovery = NATDiscovery()
    /// SOFTWARE attribute value, nil for none.
    public var software: String? = "uturn"
    /// Fixed per-worker table sizes (read at worker start only).
    public var limits = TableLimits()
    /// Per-source limits on refusals and Binding answers for clients with
    /// no allocation (per worker; the total is this worker's share).
    public var sourceLimits = SourceRateLimits()
    /// RFC 8016 mobility (coturn `--mobility`): UDP allocations asked for
    /// with an empty MOBILITY-TICKET get a ticket, and a Refresh carrying
    /// it from a new 5-tuple moves the allocation there. Off: a request
    /// carrying MOBILITY-TICKET gets 405 (Mobility Forbidden).
    public var mobility = false
    /// Seals mobility tickets; every worker must hold the same secret.
    public var mobilityTickets = MobilityTicketCodec()
    /// Traffic limits: bytes and packets per allocation, per user and for
    /// the server, new peers per second (read at worker start only).
    public var rateLimits = RateLimits()

    public init(credentials: CredentialStore, peerPolicy: PeerPolicy = PeerPolicy(), nonces: NonceCodec = NonceCodec()) {
        self.credentials = credentials
        self.peerPolicy = peerPolicy
        self.nonces = nonces
    }

    /// Security features announced in nonces under this configuration.
    var securityFeatures: SecurityFeatures {
        var f: SecurityFeatures = []
        if offerSHA256 { f.insert(.passwordAlgorithms) }
        if acceptUserHash { f.insert(.usernameAnonymity) }
        return f
    }

    /// RFC 8656 §7.2 / §8.2: min(requested, max), but never below the default.
    func lifetime(requested: UInt32?) -> UInt32 {
        guard let requested else { return defaultLifetime }
        return max(defaultLifetime, min(requested, maxLifetime))
    }
}
