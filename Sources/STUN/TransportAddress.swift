#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address held inline in two words: no heap, cheap to hash
/// and compare, so it can key the session tables on the packet path.
///
/// The 16 address bytes are kept in network order as two big-endian words:
/// `high` is bytes 0..<8 and `low` is bytes 8..<16. An IPv4 address keeps its
/// 4 bytes in the low 32 bits of `low` with `high == 0`; `family` tells the two
/// apart, so an IPv4 address never equals its IPv4-mapped IPv6 spelling (the
/// peer policy handles mapped forms explicitly).
public struct IPAddress: Hashable, Sendable {
    public enum Family: UInt8, Sendable {
        case v4 = 1
        case v6 = 2
    }

    public var family: Family
    public var high: UInt64
    public var low: UInt64

    /// An IPv4 address from its 32-bit value in host order (127.0.0.1 is 0x7F00_0001).
    @inlinable
    public init(v4 value: UInt32) {
        family = .v4
        high = 0
        low = UInt64(value)
    }

    /// An IPv6 address from its two 64-bit halves in host order.
    @inlinable
    public init(v6High: UInt64, v6Low: UInt64) {
        family = .v6
        high = v6High
        low = v6Low
    }

    /// The IPv4 value (host order). Meaningful only when `family == .v4`.
    @inlinable
    public var v4: UInt32 { UInt32(truncatingIfNeeded: low) }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text. Returns nil for anything else.
    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if text.withCString({ inet_pton(AF_INET, $0, &v4) }) == 1 {
            self.init(v4: UInt32(bigEndian: v4.s_addr))
        } else if text.withCString({ inet_pton(AF_INET6, $0, &v6) }) == 1 {
            let (h, l) = withUnsafeBytes(of: &v6) { raw in
                (
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self.init(v6High: h, v6Low: l)
        } else {
            return nil
        }
    }

    /// Writes the address bytes in network order (4 or 16 bytes) to `dst`.
    /// The caller guarantees `dst` has room for `byteCount` bytes.
    @inlinable
    public func store(to dst: UnsafeMutableRawPointer) {
        switch family {
        case .v4:
            dst.storeBytes(of: v4.bigEndian, as: UInt32.self)
        case .v6:
            dst.storeBytes(of: high.bigEndian, as: UInt64.self)
            (dst + 8).storeBytes(of: low.bigEndian, as: UInt64.self)
        }
    }

    /// Number of address bytes on the wire: 4 or 16.
    @inlinable
    public var byteCount: Int { family == .v4 ? 4 : 16 }
}

extension IPAddress: CustomStringConvertible {
    public var description: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch family {
        case .v4:
            var a = in_addr(s_addr: v4.bigEndian)
            _ = inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
        case .v6:
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { store(to: $0.baseAddress!) }
            _ = inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An IP address and UDP/TCP port: one end of a 5-tuple.
public struct TransportAddress: Hashable, Sendable {
    public var ip: IPAddress
    public var port: UInt16

    @inlinable
    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// Parses `1.2.3.4:5678`, `[::1]:5678`. Returns nil for anything else.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let ip = IPAddress(String(host)), let port = UInt16(portText) else { return nil }
        self.init(ip: ip, port: port)
    }
}

extension TransportAddress: CustomStringConvertible {
    public var description: String {
        ip.family == .v4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }
}
