import STUN

/// When new Allocates go elsewhere (300 ALTERNATE-SERVER, RFC 8489 §10 and
/// RFC 8656 §7.2): `--alternate-server-policy`.
public enum AlternatePolicy: Sendable, Equatable {
    /// Every Allocate (coturn's behaviour with `alternate-server`).
    case always
    /// Only while the server drains after SIGTERM (instead of 508).
    case draining
    /// When the server holds at least this many allocations, or drains.
    case allocations(Int)

    /// Parses `always`, `draining` or `allocations:N` (N ≥ 0).
    public init?(parsing text: String) {
        switch text {
        case "always": self = .always
        case "draining": self = .draining
        default:
            let prefix = "allocations:"
            guard text.hasPrefix(prefix), let n = Int(text.dropFirst(prefix.count)), n >= 0 else { return nil }
            self = .allocations(n)
        }
    }

    public var description: String {
        switch self {
        case .always: "always"
        case .draining: "draining"
        case .allocations(let n): "allocations:\(n)"
        }
    }
}

/// The alternates and the policy (`TURNConfiguration.alternates`).
public struct AlternateServers: Sendable, Equatable {
    public var servers: [TransportAddress] = []
    public var policy: AlternatePolicy = .always

    public init(servers: [TransportAddress] = [], policy: AlternatePolicy = .always) {
        self.servers = servers
        self.policy = policy
    }

    /// Whether the policy sends new allocations away now.
    func applies(allocations: Int, draining: Bool) -> Bool {
        guard !servers.isEmpty else { return false }
        switch policy {
        case .always: return true
        case .draining: return draining
        case .allocations(let n): return draining || allocations >= n
        }
    }
}

extension TURNServer {
    /// The alternate to send this Allocate to, or nil to serve it here. The
    /// alternate has the family of the client's address (RFC 8489 §14.15);
    /// they take turns (round-robin per worker).
    mutating func alternate(for client: TransportAddress) -> TransportAddress? {
        let a = configuration.alternates
        guard a.applies(allocations: quotas.allocationCount, draining: draining) else { return nil }
        let family = client.ip.family
        let count = a.servers.reduce(0) { $0 + ($1.ip.family == family ? 1 : 0) }
        guard count > 0 else { return nil }
        var pick = alternateTurn % count
        alternateTurn &+= 1
        for s in a.servers where s.ip.family == family {
            if pick == 0 { return s }
            pick -= 1
        }
        return nil
    }

    /// Whether an Allocate from `client` would be redirected while draining
    /// (the engine then lets it through instead of answering 508).
    public func redirectsWhileDraining(_ client: TransportAddress) -> Bool {
        let a = configuration.alternates
        return a.applies(allocations: quotas.allocationCount, draining: true)
            && a.servers.contains { $0.ip.family == client.ip.family }
    }
}
