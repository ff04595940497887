import STUN

/// An address block such as `10.0.0.0/8` or `fc00::/7`, as given to
/// `--allowed-peer-ip` / `--denied-peer-ip`.
///
/// An IPv4 block matches only IPv4 addresses; IPv4 addresses spelled inside
/// IPv6 (mapped, NAT64, ...) are unwrapped by `PeerPolicy` before matching,
/// so a block never has to be written twice.
public struct CIDR: Hashable, Sendable {
    public var family: IPAddress.Family
    /// Network bits, already masked, in the same layout as `IPAddress`.
    public var high: UInt64
    public var low: UInt64
    public var prefixLength: UInt8

    /// A block from an address and a prefix length; host bits are cleared.
    /// Returns nil when the prefix is longer than the address.
    public init?(address: IPAddress, prefixLength: Int) {
        let maxBits = address.family == .v4 ? 32 : 128
        guard prefixLength >= 0, prefixLength <= maxBits else { return nil }
        family = address.family
        self.prefixLength = UInt8(prefixLength)
        if address.family == .v4 {
            let mask = CIDR.mask32(prefixLength)
            high = 0
            low = UInt64(address.v4 & mask)
        } else {
            let (mh, ml) = CIDR.mask128(prefixLength)
            high = address.high & mh
            low = address.low & ml
        }
    }

    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let ip = IPAddress(String(parts[0])) else { return nil }
        var bits = ip.family == .v4 ? 32 : 128
        if parts.count == 2 {
            guard let n = Int(parts[1]) else { return nil }
            bits = n
        }
        self.init(address: ip, prefixLength: bits)
    }

    /// True when `ip` lies in this block (same family only).
    @inlinable
    public func contains(_ ip: IPAddress) -> Bool {
        guard ip.family == family else { return false }
        if family == .v4 {
            return ip.v4 & CIDR.mask32(Int(prefixLength)) == UInt32(truncatingIfNeeded: low)
        }
        let (mh, ml) = CIDR.mask128(Int(prefixLength))
        return ip.high & mh == high && ip.low & ml == low
    }

    @inlinable
    static func mask32(_ bits: Int) -> UInt32 {
        bits == 0 ? 0 : ~UInt32(0) << UInt32(32 - bits)
    }

    @inlinable
    static func mask128(_ bits: Int) -> (UInt64, UInt64) {
        if bits <= 0 { return (0, 0) }
        if bits >= 128 { return (~0, ~0) }
        if bits <= 64 { return (~UInt64(0) << UInt64(64 - bits), 0) }
        return (~0, ~UInt64(0) << UInt64(128 - bits))
    }
}

extension CIDR: CustomStringConvertible {
    public var description: String {
        let ip = family == .v4 ? IPAddress(v4: UInt32(truncatingIfNeeded: low)) : IPAddress(v6High: high, v6Low: low)
        return "\(ip)/\(prefixLength)"
    }
}
