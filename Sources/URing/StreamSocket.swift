import CURing

#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket file descriptor: a listener, or a connection it accepted.
///
/// Like ``UDPSocket``, a plain copyable value that does not close itself:
/// call ``close()`` exactly once, after cancelling what is armed on it.
/// Control-path code (setting up listeners, reading a new connection's
/// addresses); the data path reads and writes through the ring.
@frozen
public struct StreamSocket: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32

    @inlinable
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// A TCP socket bound to `address` and listening, with SO_REUSEADDR (a
    /// restart is not refused by connections of the previous run still in
    /// TIME_WAIT) and, if `reusePort`, SO_REUSEPORT (one listener per worker,
    /// the kernel spreading connections between them). IPv6 sockets are
    /// IPv6-only. Closes the socket if any step fails.
    public static func listening(
        on address: SocketAddress, reusePort: Bool, backlog: Int32 = 1024
    ) throws(URingError) -> StreamSocket {
        let domain = address.family == .v4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_TCP))
        guard fd >= 0 else { throw .socket(call: "socket", .current) }
        let s = StreamSocket(rawValue: fd)
        do throws(URingError) {
            try s.setOption(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
            if reusePort { try s.setOption(SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
            if address.family == .v6 { try s.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY") }
            let r = address.withSockaddr { Glibc.bind(fd, $0, $1) }
            guard r == 0 else { throw URingError.socket(call: "bind(tcp \(address))", .current) }
            guard listen(fd, backlog) == 0 else { throw URingError.socket(call: "listen", .current) }
        } catch {
            s.close()
            throw error
        }
        return s
    }

    /// A TCP socket bound to `address` to connect from (RFC 6062: a TURN
    /// server connects to a peer from the allocation's relayed address, where
    /// a listener already is). SO_REUSEADDR and SO_REUSEPORT, which the
    /// listener also has, let both hold the address; each connection is its
    /// own 4-tuple. Closes the socket if a step fails.
    public static func bound(forConnectingFrom address: SocketAddress) throws(URingError) -> StreamSocket {
        let domain = address.family == .v4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_TCP))
        guard fd >= 0 else { throw .socket(call: "socket", .current) }
        let s = StreamSocket(rawValue: fd)
        do throws(URingError) {
            try s.setOption(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
            try s.setOption(SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT")
            if address.family == .v6 { try s.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY") }
            let r = address.withSockaddr { Glibc.bind(fd, $0, $1) }
            guard r == 0 else { throw URingError.socket(call: "bind(tcp \(address))", .current) }
        } catch {
            s.close()
            throw error
        }
        return s
    }

    func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ what: String) throws(URingError) {
        try Syscall.setOption(rawValue, level, name, value, what)
    }

    /// `TCP_NODELAY`: relayed media must not wait for Nagle's algorithm.
    public func setNoDelay() throws(URingError) {
        try setOption(Int32(IPPROTO_TCP), Int32(TCP_NODELAY), 1, "TCP_NODELAY")
    }

    /// The remote address of a connected socket. The C function is `getpeername`.
    public func peerAddress() throws(URingError) -> SocketAddress {
        try Syscall.address(of: rawValue, peer: true)
    }

    /// The local address. The C function is `getsockname`.
    public func localAddress() throws(URingError) -> SocketAddress {
        try Syscall.address(of: rawValue, peer: false)
    }

    /// Closes the descriptor. The corresponding C function is `close`.
    public func close() {
        Syscall.close(rawValue)
    }
}
