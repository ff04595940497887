import CFastPath
import STUN

/// An address as the fast path's maps hold it (fastpath_maps.h): four
/// 32-bit words in network byte order, IPv6 as its 16 bytes, IPv4 in the
/// first word and zeros after, told apart by the entry's family byte.
struct MapAddress {
    var words: (UInt32, UInt32, UInt32, UInt32)

    init(_ ip: IPAddress) {
        switch ip.family {
        case .v4:
            words = (ip.v4.bigEndian, 0, 0, 0)
        case .v6:
            words = (
                UInt32(truncatingIfNeeded: ip.high >> 32).bigEndian, UInt32(truncatingIfNeeded: ip.high).bigEndian,
                UInt32(truncatingIfNeeded: ip.low >> 32).bigEndian, UInt32(truncatingIfNeeded: ip.low).bigEndian
            )
        }
    }

    /// FP_FAMILY_V4 or FP_FAMILY_V6.
    static func family(_ ip: IPAddress) -> UInt8 {
        ip.family == .v4 ? UInt8(FP_FAMILY_V4) : UInt8(FP_FAMILY_V6)
    }
}
