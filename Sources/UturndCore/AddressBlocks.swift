import STUN
import TURN

/// Parses one `--allowed-peer-ip` / `--denied-peer-ip` value: an address, a
/// CIDR block, or coturn's inclusive range `first-last` (split into the
/// fewest CIDR blocks that cover it exactly). Nil when it is none of these.
public func parseAddressBlocks(_ text: String) -> [CIDR]? {
    let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
    if parts.count == 1 {
        if parts[0].contains("/") {
            // CIDR(_:) also takes a bare address; insist on a prefix in range here.
            let pieces = parts[0].split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count == 2, let ip = IPAddress(String(pieces[0])), let n = Int(pieces[1]),
                let block = CIDR(address: ip, prefixLength: n)
            else { return nil }
            return [block]
        }
        guard let ip = IPAddress(String(parts[0])) else { return nil }
        return CIDR(address: ip, prefixLength: ip.family == .v4 ? 32 : 128).map { [$0] }
    }
    guard let first = IPAddress(String(parts[0].trimmingWhitespace())),
        let last = IPAddress(String(parts[1].trimmingWhitespace())),
        first.family == last.family
    else { return nil }
    return rangeBlocks(first: first, last: last)
}

/// The CIDR blocks covering `first...last` exactly; nil when first > last.
func rangeBlocks(first: IPAddress, last: IPAddress) -> [CIDR]? {
    let bits = first.family == .v4 ? 32 : 128
    func value(_ ip: IPAddress) -> UInt128 {
        ip.family == .v4 ? UInt128(ip.v4) : UInt128(ip.high) << 64 | UInt128(ip.low)
    }
    func address(_ v: UInt128) -> IPAddress {
        first.family == .v4
            ? IPAddress(v4: UInt32(truncatingIfNeeded: v))
            : IPAddress(v6High: UInt64(truncatingIfNeeded: v >> 64), v6Low: UInt64(truncatingIfNeeded: v))
    }
    var low = value(first)
    let high = value(last)
    guard low <= high else { return nil }
    var blocks: [CIDR] = []
    while true {
        // Largest block that starts at `low` (alignment) and ends by `high` (span).
        let aligned = low == 0 ? bits : low.trailingZeroBitCount
        let span = high - low  // block of 2^k fits when 2^k - 1 <= span
        let fits = span == UInt128.max ? 128 : UInt128.bitWidth - 1 - (span + 1).leadingZeroBitCount
        let k = min(aligned, fits, bits)
        blocks.append(CIDR(address: address(low), prefixLength: bits - k)!)
        if k == 128 { break }
        let next = low &+ (UInt128(1) << k)
        if next == 0 || next > high || next < low { break }
        low = next
    }
    return blocks
}
