import STUN

/// RFC 5780 (NAT behaviour discovery) on the server side: two IP addresses
/// of one family, each listening on a primary and an alternate port (four
/// sockets), so a Binding can be answered from another address, another
/// port, or both (CHANGE-REQUEST), and names the other one (OTHER-ADDRESS).
///
/// Off (no pair) unless two listening addresses of a family are given and
/// UDP listens; with more than two of a family the first two pair up.
public struct NATDiscovery: Sendable, Equatable {
    /// Address pairs, at most one per family: `first[i]` ↔ `second[i]`.
    public private(set) var first: [IPAddress] = []
    public private(set) var second: [IPAddress] = []
    public var primaryPort: UInt16 = 0
    public var alternatePort: UInt16 = 0

    public init() {}

    /// Pairs the first two addresses of each family in `listening`, with
    /// `port` and `alternatePort` (coturn's default: port + 1).
    public init(listening: [IPAddress], port: UInt16, alternatePort: UInt16) {
        primaryPort = port
        self.alternatePort = alternatePort
        for family in [IPAddress.Family.v4, .v6] {
            let ips = listening.filter { $0.family == family }
            guard ips.count >= 2, ips[0] != ips[1] else { continue }
            first.append(ips[0])
            second.append(ips[1])
        }
    }

    public var isEnabled: Bool { !first.isEmpty && primaryPort != alternatePort }

    /// The four addresses of each pair: what the engine binds.
    public var socketAddresses: [TransportAddress] {
        var out: [TransportAddress] = []
        for ip in first + second {
            out.append(TransportAddress(ip: ip, port: primaryPort))
            out.append(TransportAddress(ip: ip, port: alternatePort))
        }
        return out
    }

    func otherIP(_ ip: IPAddress) -> IPAddress? {
        if let i = first.firstIndex(of: ip) { return second[i] }
        if let i = second.firstIndex(of: ip) { return first[i] }
        return nil
    }

    func otherPort(_ port: UInt16) -> UInt16? {
        if port == primaryPort { return alternatePort }
        if port == alternatePort { return primaryPort }
        return nil
    }

    /// OTHER-ADDRESS for a request that came in on `local`: the other IP and
    /// the other port. Nil when `local` is not one of the four sockets.
    public func otherAddress(of local: TransportAddress) -> TransportAddress? {
        guard isEnabled, let ip = otherIP(local.ip), let port = otherPort(local.port) else { return nil }
        return TransportAddress(ip: ip, port: port)
    }

    /// Where the answer is sent from: `local`, with its IP and/or port
    /// changed as CHANGE-REQUEST asks.
    public func source(for local: TransportAddress, changeIP: Bool, changePort: Bool) -> TransportAddress? {
        guard let other = otherAddress(of: local) else { return nil }
        return TransportAddress(ip: changeIP ? other.ip : local.ip, port: changePort ? other.port : local.port)
    }
}
