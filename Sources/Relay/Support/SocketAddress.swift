import Glibc
import STUN
import URing

// The bridge between the project's inline `TransportAddress` (STUN module)
// and URing's `SocketAddress`, which holds the same fields: URing must not
// import STUN, so the conversion lives here. The sockaddr encoding itself is
// URing's (`SocketAddress(sockaddr:length:)`, `write(to:)`); these are field
// copies around it, inlined on the packet path.

extension SocketAddress {
    /// The URing socket address for a TransportAddress (same field layout).
    @inlinable
    public init(_ t: TransportAddress) {
        switch t.ip.family {
        case .v4: self.init(v4: t.ip.v4, port: t.port)
        case .v6: self.init(v6High: t.ip.high, v6Low: t.ip.low, port: t.port)
        }
    }
}

extension TransportAddress {
    @inlinable
    public init(_ s: SocketAddress) {
        switch s.family {
        case .v4: self.init(ip: IPAddress(v4: UInt32(truncatingIfNeeded: s.low)), port: s.port)
        case .v6: self.init(ip: IPAddress(v6High: s.high, v6Low: s.low), port: s.port)
        }
    }

    /// Reads an AF_INET / AF_INET6 socket address of `length` bytes. Nil for
    /// any other family or a length too short for the family.
    @inlinable
    public init?(sockaddr raw: UnsafeRawPointer, length: Int) {
        guard let s = SocketAddress(sockaddr: raw, length: length) else { return nil }
        self.init(s)
    }

    /// Writes this address as a `sockaddr_in` or `sockaddr_in6` and returns
    /// its length. `raw` must have room for 28 bytes.
    @inlinable
    @discardableResult
    public func store(sockaddr raw: UnsafeMutableRawPointer) -> socklen_t {
        socklen_t(SocketAddress(self).write(to: raw))
    }
}
