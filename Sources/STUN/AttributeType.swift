/// A STUN attribute type (RFC 8489 §14, RFC 8656 §18, RFC 6062 §6.2).
///
/// Types below 0x8000 are comprehension-required: a receiver that does not
/// understand one must reject a request with 420 and list it in
/// UNKNOWN-ATTRIBUTES.
public struct STUNAttributeType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    @inlinable
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// True for 0x0000...0x7FFF.
    @inlinable
    public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    // Comprehension-required
    public static let mappedAddress = STUNAttributeType(0x0001)
    /// RFC 5780 §7.2 (NAT behaviour discovery).
    public static let changeRequest = STUNAttributeType(0x0003)
    public static let username = STUNAttributeType(0x0006)
    public static let messageIntegrity = STUNAttributeType(0x0008)
    public static let errorCode = STUNAttributeType(0x0009)
    public static let unknownAttributes = STUNAttributeType(0x000A)
    public static let channelNumber = STUNAttributeType(0x000C)
    public static let lifetime = STUNAttributeType(0x000D)
    public static let xorPeerAddress = STUNAttributeType(0x0012)
    public static let data = STUNAttributeType(0x0013)
    public static let realm = STUNAttributeType(0x0014)
    public static let nonce = STUNAttributeType(0x0015)
    public static let xorRelayedAddress = STUNAttributeType(0x0016)
    public static let requestedAddressFamily = STUNAttributeType(0x0017)
    public static let evenPort = STUNAttributeType(0x0018)
    public static let requestedTransport = STUNAttributeType(0x0019)
    public static let dontFragment = STUNAttributeType(0x001A)
    public static let messageIntegritySHA256 = STUNAttributeType(0x001C)
    public static let passwordAlgorithm = STUNAttributeType(0x001D)
    public static let userHash = STUNAttributeType(0x001E)
    public static let xorMappedAddress = STUNAttributeType(0x0020)
    public static let reservationToken = STUNAttributeType(0x0022)
    public static let priority = STUNAttributeType(0x0024)
    public static let useCandidate = STUNAttributeType(0x0025)
    /// RFC 5780 §7.6 and §7.5.
    public static let padding = STUNAttributeType(0x0026)
    public static let responsePort = STUNAttributeType(0x0027)
    public static let connectionID = STUNAttributeType(0x002A)
    // Comprehension-optional
    public static let additionalAddressFamily = STUNAttributeType(0x8000)
    public static let addressErrorCode = STUNAttributeType(0x8001)
    public static let passwordAlgorithms = STUNAttributeType(0x8002)
    public static let alternateDomain = STUNAttributeType(0x8003)
    public static let icmp = STUNAttributeType(0x8004)
    public static let software = STUNAttributeType(0x8022)
    public static let alternateServer = STUNAttributeType(0x8023)
    public static let fingerprint = STUNAttributeType(0x8028)
    public static let iceControlled = STUNAttributeType(0x8029)
    public static let iceControlling = STUNAttributeType(0x802A)
    /// RFC 5780 §7.3 and §7.4.
    public static let responseOrigin = STUNAttributeType(0x802B)
    public static let otherAddress = STUNAttributeType(0x802C)
    /// RFC 8016 §3.3: empty in an Allocate request (the client asks for
    /// mobility); an opaque server ticket in responses and in a Refresh
    /// from a new 5-tuple.
    public static let mobilityTicket = STUNAttributeType(0x8030)

    /// True for every type this module parses and validates: the set a TURN
    /// server understands. ICE's PRIORITY / USE-CANDIDATE are not in it.
    @inlinable
    public var isKnownToTURN: Bool {
        AttributeSlot(self) != nil || self == .xorPeerAddress || self == .xorRelayedAddress
    }

    /// Singular attributes whose second copy makes the parser throw
    /// `.duplicateAttribute`: the ones a server bases authentication or
    /// allocation decisions on, where "first wins" across middleboxes and
    /// implementations is a needless ambiguity. Other singular attributes
    /// (SOFTWARE, ERROR-CODE, MAPPED-ADDRESS, ...) keep their first copy and
    /// ignore the rest, as RFC 8489 §14 permits.
    @inlinable
    public var rejectsDuplicates: Bool {
        switch self {
        case .messageIntegrity, .messageIntegritySHA256, .fingerprint, .username, .userHash, .realm, .nonce,
            .lifetime, .channelNumber, .requestedTransport, .passwordAlgorithm, .passwordAlgorithms, .data,
            .requestedAddressFamily, .additionalAddressFamily, .evenPort, .dontFragment, .reservationToken,
            .connectionID, .mobilityTicket:
            return true
        default:
            return false
        }
    }
}

extension STUNAttributeType: CustomStringConvertible {
    public var description: String {
        let hex = String(rawValue, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}

/// Index into `STUNMessage`'s table of first-occurrence offsets: one entry per
/// attribute type the parser records (XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS
/// record their first copy; the iterators find the rest).
@usableFromInline
enum AttributeSlot: Int {
    case mappedAddress, xorMappedAddress, username, userHash, messageIntegrity, messageIntegritySHA256
    case fingerprint, errorCode, realm, nonce, passwordAlgorithms, passwordAlgorithm, unknownAttributes
    case software, alternateServer, channelNumber, lifetime, xorPeerAddress, data, xorRelayedAddress
    case requestedAddressFamily, additionalAddressFamily, addressErrorCode, evenPort, requestedTransport
    case dontFragment, reservationToken, icmp, connectionID, mobilityTicket

    /// Size of the inline table; at least the number of cases.
    @usableFromInline static let capacity = 32

    @inlinable
    init?(_ type: STUNAttributeType) {
        switch type.rawValue {
        case 0x0001: self = .mappedAddress
        case 0x0006: self = .username
        case 0x0008: self = .messageIntegrity
        case 0x0009: self = .errorCode
        case 0x000A: self = .unknownAttributes
        case 0x000C: self = .channelNumber
        case 0x000D: self = .lifetime
        case 0x0012: self = .xorPeerAddress
        case 0x0013: self = .data
        case 0x0014: self = .realm
        case 0x0015: self = .nonce
        case 0x0016: self = .xorRelayedAddress
        case 0x0017: self = .requestedAddressFamily
        case 0x0018: self = .evenPort
        case 0x0019: self = .requestedTransport
        case 0x001A: self = .dontFragment
        case 0x001C: self = .messageIntegritySHA256
        case 0x001D: self = .passwordAlgorithm
        case 0x001E: self = .userHash
        case 0x0020: self = .xorMappedAddress
        case 0x0022: self = .reservationToken
        case 0x002A: self = .connectionID
        case 0x8000: self = .additionalAddressFamily
        case 0x8001: self = .addressErrorCode
        case 0x8002: self = .passwordAlgorithms
        case 0x8004: self = .icmp
        case 0x8022: self = .software
        case 0x8023: self = .alternateServer
        case 0x8028: self = .fingerprint
        case 0x8030: self = .mobilityTicket
        default: return nil
        }
    }
}
