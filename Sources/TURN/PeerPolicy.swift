import STUN

/// Why a peer address was refused. Kept for logs, metrics and tests; the
/// client only ever sees 403 Forbidden.
public enum PeerDenial: UInt8, Sendable, CustomStringConvertible {
    case unspecified
    case loopback
    case linkLocal
    case multicast
    case broadcast
    /// 240.0.0.0/4 (other than broadcast): never a valid unicast peer.
    case reserved
    case serverAddress
    case privateRange
    case deniedList

    public var description: String {
        switch self {
        case .unspecified: "unspecified"
        case .loopback: "loopback"
        case .linkLocal: "link-local"
        case .multicast: "multicast"
        case .broadcast: "broadcast"
        case .reserved: "reserved"
        case .serverAddress: "server's own address"
        case .privateRange: "private range"
        case .deniedList: "denied-peer-ip"
        }
    }
}

/// Which peer addresses a client may reach through the relay: the guard
/// against using the TURN server to reach its own host or internal network.
///
/// Precedence (checked on every spelling of the address, see below):
/// 1. Hard denials that no list can lift: unspecified, loopback (unless
///    `allowLoopbackPeers`), link-local, multicast, broadcast/reserved, and
///    the server's own addresses. A misconfigured allow list must not reopen
///    the SSRF holes behind coturn's CVE-2020-26262. With `relayPorts` set
///    (uturnd sets it), the server's own addresses are refused on every port
///    but the relay ports instead: a peer there is another allocation's
///    relayed address (two clients of this server talking relay to relay, as
///    two relay-only browsers do), while its listening ports and any other
///    service on the host stay out of reach. Permissions name addresses
///    only, so that part is checked where a port is known (ChannelBind, Send
///    indications, Connect: `denial(forPeer:)`, `reachesOwnService`).
/// 2. `allowed` (`--allowed-peer-ip`): as in coturn, an allow entry wins over
///    `denied` and over the private-range default, so an operator can deny
///    10.0.0.0/8 and still allow 10.1.2.3.
/// 3. `denied` (`--denied-peer-ip`).
/// 4. Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7,
///    fec0::/10) when `denyPrivateByDefault`.
/// 5. Anything else is allowed.
///
/// Spellings: an IPv6 address that embeds an IPv4 address (IPv4-mapped
/// `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`,
/// NAT64 `64:ff9b::/96` and every RFC 6052 layout under `64:ff9b:1::/48`,
/// 6to4 `2002:AABB:CCDD::/48`, Teredo server and client) is checked both as
/// itself and as each embedded IPv4 address; a denial of any spelling wins.
///
/// With `allowLoopbackPeers` (testing on one host), the server's own
/// addresses that are loopback are not refused either, since a test peer on
/// 127.0.0.1 necessarily shares the server's address.
///
/// Cost: no allocation; a scan of the (short) CIDR lists. It runs on
/// CreatePermission/ChannelBind, not per relayed packet.
public struct PeerPolicy: Sendable {
    public var allowLoopbackPeers: Bool
    public var denyPrivateByDefault: Bool
    public var allowed: [CIDR]
    public var denied: [CIDR]
    /// Listening and relay addresses of this server (and its external IPs).
    public var serverAddresses: [IPAddress]
    /// The relay port range (`--min-port`...`--max-port`): the only ports of
    /// `serverAddresses` a peer may have. nil: those addresses are refused whole.
    public var relayPorts: ClosedRange<UInt16>?

    public init(
        allowLoopbackPeers: Bool = false,
        denyPrivateByDefault: Bool = true,
        allowed: [CIDR] = [],
        denied: [CIDR] = [],
        serverAddresses: [IPAddress] = [],
        relayPorts: ClosedRange<UInt16>? = nil
    ) {
        self.allowLoopbackPeers = allowLoopbackPeers
        self.denyPrivateByDefault = denyPrivateByDefault
        self.allowed = allowed
        self.denied = denied
        self.serverAddresses = serverAddresses
        self.relayPorts = relayPorts
    }

    /// The reason a peer transport address is refused, or nil: the address's
    /// own denial, then (with `relayPorts`) this server's addresses off the
    /// relay ports. For requests that name a port (ChannelBind, Connect).
    public func denial(forPeer peer: TransportAddress) -> PeerDenial? {
        if let d = denial(for: peer.ip) { return d }
        return reachesOwnService(peer) ? .serverAddress : nil
    }

    /// True when `peer` is one of this server's addresses (or its IPv4-mapped
    /// spelling) on a port outside the relay range. Cheap (a scan of the
    /// server's few addresses, only for ports outside the range): Send
    /// indications check it each time, since their permission names only
    /// the address.
    public func reachesOwnService(_ peer: TransportAddress) -> Bool {
        guard let relayPorts, !relayPorts.contains(peer.port) else { return false }
        let ip = peer.ip
        let mapped = ip.family == .v6 && ip.high == 0 && ip.low >> 32 == 0xFFFF
            ? IPAddress(v4: UInt32(truncatingIfNeeded: ip.low)) : ip
        for own in serverAddresses where own == ip || own == mapped {
            if !(allowLoopbackPeers && PeerPolicy.hardCategory(own) == .loopback) { return true }
        }
        return false
    }

    /// True when a client may install a permission for `ip`.
    @inlinable
    public func isAllowed(_ ip: IPAddress) -> Bool { denial(for: ip) == nil }

    /// The reason `ip` is refused, or nil when it is allowed.
    public func denial(for ip: IPAddress) -> PeerDenial? {
        if let d = denialOfSpelling(ip) { return d }
        guard ip.family == .v6 else { return nil }
        let h = ip.high
        let l = ip.low
        let low32 = UInt32(truncatingIfNeeded: l)
        // `::` and `::1` are IPv6's own unspecified and loopback, handled above, not compatible spellings.
        if h == 0 && (l >> 32 == 0xFFFF || (l >> 32 == 0 && l > 1) || l >> 32 == 0xFFFF_0000) {
            // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (SIIT)
            return denialOfSpelling(IPAddress(v4: low32))
        }
        if h == 0x0064_FF9B_0000_0000 && l >> 32 == 0 {
            return denialOfSpelling(IPAddress(v4: low32))  // NAT64 well-known prefix /96
        }
        if h >> 16 == 0x0064_FF9B_0001 {
            // Local-use NAT64 (RFC 8215): the prefix length is the operator's
            // choice, so try every RFC 6052 layout that fits under /48. A
            // layout counts only when its suffix bits are zero, as RFC 6052
            // requires, so a /96 address is not misread as a /48 one.
            // Bits 64..71 (the "u" octet) never carry address bits.
            if l & 0xFF_FFFF_FFFF == 0,  // /48: v4 in bits 48..63 and 72..87
                let d = denialOfSpelling(IPAddress(v4: UInt32(truncatingIfNeeded: (h & 0xFFFF) << 16 | (l >> 40) & 0xFFFF)))
            {
                return d
            }
            if l & 0xFFFF_FFFF == 0,  // /56: bits 56..63 and 72..95
                let d = denialOfSpelling(IPAddress(v4: UInt32(truncatingIfNeeded: (h & 0xFF) << 24 | (l >> 32) & 0xFF_FFFF)))
            {
                return d
            }
            if l & 0xFF_FFFF == 0,  // /64: bits 72..103
                let d = denialOfSpelling(IPAddress(v4: UInt32(truncatingIfNeeded: l >> 24)))
            {
                return d
            }
            return denialOfSpelling(IPAddress(v4: low32))  // /96
        }
        if h >> 48 == 0x2002 {
            return denialOfSpelling(IPAddress(v4: UInt32(truncatingIfNeeded: h >> 16)))  // 6to4
        }
        if h >> 32 == 0x2001_0000 {
            // Teredo: server IPv4 in bits 32..63, client IPv4 obfuscated (inverted) in the last 32 bits.
            if let d = denialOfSpelling(IPAddress(v4: UInt32(truncatingIfNeeded: h))) { return d }
            return denialOfSpelling(IPAddress(v4: ~low32))
        }
        return nil
    }

    /// Steps 1–4 of the precedence for one spelling.
    func denialOfSpelling(_ ip: IPAddress) -> PeerDenial? {
        if let hard = PeerPolicy.hardCategory(ip) {
            if !(hard == .loopback && allowLoopbackPeers) { return hard }
        }
        // With relay ports known, an own address is refused by port instead (see the type's comment).
        if relayPorts == nil {
            for own in serverAddresses where own == ip {
                if !(allowLoopbackPeers && PeerPolicy.hardCategory(own) == .loopback) { return .serverAddress }
            }
        }
        for block in allowed where block.contains(ip) { return nil }
        for block in denied where block.contains(ip) { return .deniedList }
        if denyPrivateByDefault && PeerPolicy.isPrivate(ip) { return .privateRange }
        return nil
    }

    /// Categories that are never a legitimate relay peer.
    static func hardCategory(_ ip: IPAddress) -> PeerDenial? {
        if ip.family == .v4 {
            let a = ip.v4
            switch a >> 24 {
            case 0: return .unspecified  // 0.0.0.0/8
            case 127: return .loopback
            case 224...239: return .multicast
            case 240...255: return a == 0xFFFF_FFFF ? .broadcast : .reserved
            default: break
            }
            if a >> 16 == 0xA9FE { return .linkLocal }  // 169.254/16
            return nil
        }
        if ip.high == 0 && ip.low == 0 { return .unspecified }
        if ip.high == 0 && ip.low == 1 { return .loopback }
        if ip.high >> 54 == 0x3FA { return .linkLocal }  // fe80::/10
        if ip.high >> 56 == 0xFF { return .multicast }
        return nil
    }

    static func isPrivate(_ ip: IPAddress) -> Bool {
        if ip.family == .v4 {
            let a = ip.v4
            return a >> 24 == 10  // 10/8
                || a >> 20 == 0xAC1  // 172.16/12
                || a >> 16 == 0xC0A8  // 192.168/16
                || a >> 22 == 0x191  // 100.64/10 (carrier-grade NAT)
        }
        return ip.high >> 57 == 0x7E  // fc00::/7 (unique local)
            || ip.high >> 54 == 0x3FB  // fec0::/10 (deprecated site-local)
    }
}
