/// Wire form of the address attributes (RFC 8489 §14.1–14.2): a reserved byte,
/// a family byte (0x01 IPv4, 0x02 IPv6), a 16-bit port and 4 or 16 address
/// bytes; the XOR forms XOR the port with the cookie's top half and the
/// address with the cookie (IPv4) or cookie + transaction ID (IPv6).
public enum AddressCodec {
    /// Wire family value for IPv4.
    public static let familyIPv4: UInt8 = 0x01
    /// Wire family value for IPv6.
    public static let familyIPv6: UInt8 = 0x02

    /// Value length of an address attribute for `family`: 8 or 20.
    @inlinable
    public static func valueLength(_ family: IPAddress.Family) -> Int {
        family == .v4 ? 8 : 20
    }

    /// Decodes an address value; `xor` undoes the XOR encoding with that
    /// transaction ID. Nil when the family or length is wrong.
    @inlinable
    public static func decode(_ value: UnsafeRawBufferPointer, xor: TransactionID?) -> TransportAddress? {
        guard value.count >= 8 else { return nil }
        var port = value.be16(2)
        switch value[1] {
        case familyIPv4 where value.count == 8:
            var ip = value.be32(4)
            if xor != nil {
                port ^= UInt16(truncatingIfNeeded: STUNHeader.magicCookie >> 16)
                ip ^= STUNHeader.magicCookie
            }
            return TransportAddress(ip: IPAddress(v4: ip), port: port)
        case familyIPv6 where value.count == 20:
            var high = value.be64(4)
            var low = value.be64(12)
            if let tid = xor {
                port ^= UInt16(truncatingIfNeeded: STUNHeader.magicCookie >> 16)
                high ^= UInt64(STUNHeader.magicCookie) << 32 | UInt64(tid.high)
                low ^= tid.low
            }
            return TransportAddress(ip: IPAddress(v6High: high, v6Low: low), port: port)
        default:
            return nil
        }
    }

    /// Writes an address value at `pointer` (8 or 20 bytes; the caller
    /// guarantees room for `valueLength(address.ip.family)`).
    @inlinable
    public static func encode(_ address: TransportAddress, xor: TransactionID?, to pointer: UnsafeMutableRawPointer) {
        var port = address.port
        var ip = address.ip
        if let tid = xor {
            port ^= UInt16(truncatingIfNeeded: STUNHeader.magicCookie >> 16)
            switch ip.family {
            case .v4:
                ip.low ^= UInt64(STUNHeader.magicCookie)
            case .v6:
                ip.high ^= UInt64(STUNHeader.magicCookie) << 32 | UInt64(tid.high)
                ip.low ^= tid.low
            }
        }
        pointer.storeBytes(of: 0, as: UInt8.self)
        (pointer + 1).storeBytes(of: ip.family == .v4 ? familyIPv4 : familyIPv6, as: UInt8.self)
        (pointer + 2).storeBytes(of: port.bigEndian, as: UInt16.self)
        ip.store(to: pointer + 4)
    }
}
