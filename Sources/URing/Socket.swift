import CURing

#if canImport(Glibc)
import Glibc
#endif

/// A UDP socket file descriptor with the few options the relay sets.
///
/// A plain copyable value (the engine keeps thousands in tables); it does not
/// close itself: call ``close()`` exactly once, after cancelling any receive
/// armed on it (``Ring/prepareCancel(fileDescriptor:userData:)``).
/// Control-path code: these calls are not on the packet path.
@frozen
public struct UDPSocket: RawRepresentable, Hashable, Sendable {
    /// The file descriptor.
    public var rawValue: Int32

    @inlinable
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Opens a UDP socket for `family` (close-on-exec; blocking unless
    /// `nonBlocking`: io_uring polls either way).
    /// The corresponding C function is `socket`.
    public static func open(family: SocketAddress.Family, nonBlocking: Bool = false) throws(URingError) -> UDPSocket {
        let domain = family == .v4 ? AF_INET : AF_INET6
        var type = Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(domain, type, Int32(IPPROTO_UDP))
        guard fd >= 0 else { throw .socket(call: "socket", .current) }
        return UDPSocket(rawValue: fd)
    }

    /// Opens a socket for `address.family`, applies `configure`, and binds.
    /// Closes the socket if any step fails.
    public static func bound(
        to address: SocketAddress, reusePort: Bool = false, ipv6Only: Bool = true
    ) throws(URingError) -> UDPSocket {
        let s = try open(family: address.family)
        do {
            if reusePort { try s.setReusePort(true) }
            if address.family == .v6 { try s.setIPv6Only(ipv6Only) }
            try s.bind(to: address)
        } catch {
            s.close()
            throw error
        }
        return s
    }

    @usableFromInline
    func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ what: String) throws(URingError) {
        try Syscall.setOption(rawValue, level, name, value, what)
    }

    /// `SO_REUSEPORT`: several sockets (one per worker) bind the same address
    /// and the kernel hashes each 5-tuple to one of them.
    public func setReusePort(_ on: Bool) throws(URingError) {
        try setOption(SOL_SOCKET, SO_REUSEPORT, on ? 1 : 0, "SO_REUSEPORT")
    }

    /// `SO_REUSEADDR`.
    public func setReuseAddress(_ on: Bool) throws(URingError) {
        try setOption(SOL_SOCKET, SO_REUSEADDR, on ? 1 : 0, "SO_REUSEADDR")
    }

    /// `IPV6_V6ONLY` (IPv6 sockets only; set before bind).
    public func setIPv6Only(_ on: Bool) throws(URingError) {
        try setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, on ? 1 : 0, "IPV6_V6ONLY")
    }

    /// `UDP_GRO`: the kernel may coalesce a train of equal-size datagrams from
    /// one sender into one receive with a `UDP_GRO` cmsg carrying the segment
    /// size (see ``ReceivedMessage/groSegmentSize``). Buffers must then be
    /// large (64 KiB) and the control area must fit an `int` cmsg.
    public func setUDPGRO(_ on: Bool) throws(URingError) {
        try setOption(Int32(IPPROTO_UDP), curing_udp_gro(), on ? 1 : 0, "UDP_GRO")
    }

    /// `SO_RCVBUF` (the kernel doubles it and caps at `net.core.rmem_max`).
    public func setReceiveBufferSize(_ bytes: Int) throws(URingError) {
        try setOption(SOL_SOCKET, SO_RCVBUF, Int32(clamping: bytes), "SO_RCVBUF")
    }

    /// `SO_SNDBUF` (the kernel doubles it and caps at `net.core.wmem_max`).
    public func setSendBufferSize(_ bytes: Int) throws(URingError) {
        try setOption(SOL_SOCKET, SO_SNDBUF, Int32(clamping: bytes), "SO_SNDBUF")
    }

    /// `SO_RCVTIMEO` for plain blocking ``receive(into:)`` calls (tests, tools).
    public func setReceiveTimeout(_ timeout: Duration) throws(URingError) {
        let (s, atto) = timeout.components
        var tv = timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
        try withUnsafeBytes(of: &tv) { (b) throws(URingError) in
            try Syscall.setOption(rawValue, SOL_SOCKET, SO_RCVTIMEO, bytes: b, "SO_RCVTIMEO")
        }
    }

    /// Binds to `address` (port 0 picks a free port; read it back with ``localAddress()``).
    /// The corresponding C function is `bind`.
    public func bind(to address: SocketAddress) throws(URingError) {
        let r = address.withSockaddr { Glibc.bind(rawValue, $0, $1) }
        guard r == 0 else { throw .socket(call: "bind(\(address))", .current) }
    }

    /// `connect`: the socket then sends to and receives from `address` only.
    /// On a socket bound with SO_REUSEPORT, the kernel then hands it that
    /// remote's datagrams in preference to the unconnected group members.
    public func connect(to address: SocketAddress) throws(URingError) {
        let r = address.withSockaddr { Glibc.connect(rawValue, $0, $1) }
        guard r == 0 else { throw .socket(call: "connect(\(address))", .current) }
    }

    /// The bound address. The corresponding C function is `getsockname`.
    public func localAddress() throws(URingError) -> SocketAddress {
        try Syscall.address(of: rawValue, peer: false)
    }

    /// A plain `sendto` (control path, tests, tools; the data path sends through
    /// the ring). Returns bytes sent. The corresponding C function is `sendto`.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) throws(URingError) -> Int {
        let n = destination.withSockaddr { sendto(rawValue, bytes.baseAddress, bytes.count, 0, $0, $1) }
        guard n >= 0 else { throw .socket(call: "sendto", .current) }
        return n
    }

    /// A plain blocking `recvfrom` into `buffer`. Returns the byte count and
    /// sender, or nil on timeout (`EAGAIN` after ``setReceiveTimeout(_:)``).
    /// The corresponding C function is `recvfrom`.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(URingError) -> (Int, SocketAddress)? {
        var s = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var n: Int
        repeat {
            n = withUnsafeMutableBytes(of: &s) {
                recvfrom(
                    rawValue, buffer.baseAddress, buffer.count, 0,
                    $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &len)
            }
        } while n < 0 && errno == EINTR
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw .socket(call: "recvfrom", .current)
        }
        guard let a = SocketAddress(storage: s) else { throw .socket(call: "recvfrom", .invalidArgument) }
        return (n, a)
    }

    /// Closes the descriptor. The corresponding C function is `close`.
    public func close() {
        Syscall.close(rawValue)
    }
}
