import CURing

#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address and UDP port, held inline with no heap.
///
/// The neutral form between the kernel's `sockaddr_in` / `sockaddr_in6` and the
/// project's `TransportAddress`: URing does not import STUN (see
/// ARCHITECTURE.md), so the Relay module converts. The fields mirror STUN's
/// `IPAddress` exactly, so that conversion is a field copy:
/// - `family`: `.v4` (1) or `.v6` (2), the same raw values as `IPAddress.Family`;
/// - `high`, `low`: the 16 address bytes as two big-endian-read words, host
///   order (`high` = bytes 0..<8). IPv4 keeps its 32-bit value in the low half
///   of `low` with `high == 0`;
/// - `port`: host order.
///
/// IPv6 scope IDs and flow labels are not kept (link-local peers are denied by
/// policy anyway); conversion back writes zero.
@frozen
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt8, Sendable {
        case v4 = 1
        case v6 = 2
    }

    public var family: Family
    public var high: UInt64
    public var low: UInt64
    public var port: UInt16

    /// IPv4 from its host-order value (127.0.0.1 is 0x7F00_0001).
    @inlinable
    public init(v4 address: UInt32, port: UInt16) {
        family = .v4
        high = 0
        low = UInt64(address)
        self.port = port
    }

    /// IPv6 from its two host-order halves.
    @inlinable
    public init(v6High: UInt64, v6Low: UInt64, port: UInt16) {
        family = .v6
        high = v6High
        low = v6Low
        self.port = port
    }

    /// 127.0.0.1 with `port`.
    public static func loopbackV4(port: UInt16 = 0) -> SocketAddress { SocketAddress(v4: 0x7F00_0001, port: port) }
    /// ::1 with `port`.
    public static func loopbackV6(port: UInt16 = 0) -> SocketAddress { SocketAddress(v6High: 0, v6Low: 1, port: port) }

    /// Parses dotted-quad IPv4 or IPv6 text (no brackets, no port).
    public init?(_ text: String, port: UInt16) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if text.withCString({ inet_pton(AF_INET, $0, &v4) }) == 1 {
            self.init(v4: UInt32(bigEndian: v4.s_addr), port: port)
        } else if text.withCString({ inet_pton(AF_INET6, $0, &v6) }) == 1 {
            let (h, l) = withUnsafeBytes(of: &v6) {
                (
                    UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self.init(v6High: h, v6Low: l, port: port)
        } else {
            return nil
        }
    }

    /// Decodes a `sockaddr_in` or `sockaddr_in6` of `length` bytes (as the
    /// kernel returns them in `msg_name`). Nil for other families or short input.
    @inlinable
    public init?(sockaddr raw: UnsafeRawPointer, length: Int) {
        guard length >= 2 else { return nil }
        let family = raw.loadUnaligned(as: sa_family_t.self)
        if family == sa_family_t(AF_INET), length >= MemoryLayout<sockaddr_in>.size {
            // sockaddr_in: family(2) port(2, network order) addr(4, network order)
            let port = UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            let addr = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            self.init(v4: addr, port: port)
        } else if family == sa_family_t(AF_INET6), length >= MemoryLayout<sockaddr_in6>.size {
            // sockaddr_in6: family(2) port(2) flowinfo(4) addr(16) scope_id(4)
            let port = UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            let h = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let l = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            self.init(v6High: h, v6Low: l, port: port)
        } else {
            return nil
        }
    }

    /// Decodes raw `sockaddr` bytes (for example ``ReceivedMessage/name``).
    @inlinable
    public init?(sockaddr bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return nil }
        self.init(sockaddr: base, length: bytes.count)
    }

    /// Decodes a `sockaddr_storage`.
    public init?(storage: sockaddr_storage) {
        var s = storage
        guard let a = withUnsafeBytes(of: &s, { SocketAddress(sockaddr: $0) }) else { return nil }
        self = a
    }

    /// The `sockaddr` length for this family: 16 or 28.
    @inlinable
    public var sockaddrLength: Int {
        family == .v4 ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
    }

    /// Writes a `sockaddr_in` or `sockaddr_in6` to `destination`, which must have
    /// room for ``sockaddrLength`` bytes (a `sockaddr_storage` always does), and
    /// returns the length to pass as `socklen_t` / `msg_namelen`.
    @inlinable @discardableResult
    public func write(to destination: UnsafeMutableRawPointer) -> Int {
        switch family {
        case .v4:
            destination.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_in>.size)
            destination.storeBytes(of: sa_family_t(AF_INET), as: sa_family_t.self)
            destination.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            destination.storeBytes(of: UInt32(truncatingIfNeeded: low).bigEndian, toByteOffset: 4, as: UInt32.self)
            return MemoryLayout<sockaddr_in>.size
        case .v6:
            destination.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_in6>.size)
            destination.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
            destination.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            destination.storeBytes(of: high.bigEndian, toByteOffset: 8, as: UInt64.self)
            destination.storeBytes(of: low.bigEndian, toByteOffset: 16, as: UInt64.self)
            return MemoryLayout<sockaddr_in6>.size
        }
    }

    /// This address as a `sockaddr_storage`.
    public var storage: sockaddr_storage {
        var s = sockaddr_storage()
        withUnsafeMutableBytes(of: &s) { _ = write(to: $0.baseAddress!) }
        return s
    }

    /// Calls `body` with a `sockaddr` for this address and its length.
    @inlinable
    public func withSockaddr<R, E: Error>(
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> R
    ) throws(E) -> R {
        var s = sockaddr_storage()
        return try withUnsafeMutableBytes(of: &s) { (raw) throws(E) -> R in
            let len = write(to: raw.baseAddress!)
            return try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(len))
        }
    }

    /// The 16 address bytes in network order (IPv4 in the first 4).
    @inlinable
    public var addressBytes: (UInt64, UInt64) { (high.bigEndian, low.bigEndian) }

    public var description: String {
        switch family {
        case .v4:
            let v = UInt32(truncatingIfNeeded: low)
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF):\(port)"
        case .v6:
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) {
                $0.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
            let text = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            return "[\(text)]:\(port)"
        }
    }
}
