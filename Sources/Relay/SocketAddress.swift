import Glibc
import STUN

// Conversions between the project's inline `TransportAddress` and the kernel's
// socket address structs. These are the only places in Relay that reinterpret
// `sockaddr` memory. Invariant for every function here: the pointer given
// covers at least `MemoryLayout<sockaddr_in6>.size` (28) bytes, the largest
// address we ever read or write.

extension TransportAddress {
    /// Reads an AF_INET / AF_INET6 socket address. Returns nil for any other
    /// family or a length too short for the family.
    @inlinable
    public init?(sockaddr raw: UnsafeRawPointer, length: Int) {
        guard length >= 2 else { return nil }
        let family = raw.loadUnaligned(as: sa_family_t.self)
        switch Int32(family) {
        case AF_INET:
            guard length >= MemoryLayout<sockaddr_in>.size else { return nil }
            let port = UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            let addr = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            self.init(ip: IPAddress(v4: addr), port: port)
        case AF_INET6:
            guard length >= MemoryLayout<sockaddr_in6>.size else { return nil }
            let port = UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            let high = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let low = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            self.init(ip: IPAddress(v6High: high, v6Low: low), port: port)
        default:
            return nil
        }
    }

    /// Writes this address as a `sockaddr_in` or `sockaddr_in6` and returns
    /// its length. `raw` must have room for 28 bytes.
    @inlinable
    @discardableResult
    public func store(sockaddr raw: UnsafeMutableRawPointer) -> socklen_t {
        switch ip.family {
        case .v4:
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_in>.size)
            raw.storeBytes(of: sa_family_t(AF_INET), as: sa_family_t.self)
            raw.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            raw.storeBytes(of: ip.v4.bigEndian, toByteOffset: 4, as: UInt32.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6:
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_in6>.size)
            raw.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
            raw.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            raw.storeBytes(of: ip.high.bigEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: ip.low.bigEndian, toByteOffset: 16, as: UInt64.self)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }
}
