/// Per-type value checks run once at parse time, so that accessors can
/// decode without failing. Limits are RFC 8489 §14 and RFC 8656 §18.
@usableFromInline
enum AttributeValidation {
    /// USERNAME: fewer than 509 bytes in RFC 8489, 513 in RFC 5389; the looser wins.
    static let maxUsername = 513
    /// REALM, NONCE, SOFTWARE, reason phrases: fewer than 128 characters, at most 763 bytes.
    static let maxText = 763
    /// MOBILITY-TICKET: RFC 8016 sets no limit; uturn's tickets are far
    /// shorter, and anything longer is not worth reading.
    static let maxMobilityTicket = 256

    @usableFromInline
    static func validate(
        _ type: STUNAttributeType, _ bytes: UnsafeRawBufferPointer, valueOffset: Int, length: Int
    ) throws(STUNError) {
        switch type {
        case .mappedAddress, .xorMappedAddress, .alternateServer, .xorPeerAddress, .xorRelayedAddress:
            guard length >= 2 else { throw .invalidLength(type) }
            let family = bytes[valueOffset + 1]
            switch family {
            case AddressCodec.familyIPv4: guard length == 8 else { throw .invalidLength(type) }
            case AddressCodec.familyIPv6: guard length == 20 else { throw .invalidLength(type) }
            default: throw .badAddressFamily(type)
            }
        case .username:
            guard length <= maxUsername else { throw .valueTooLong(type) }
        case .realm, .nonce, .software:
            guard length <= maxText else { throw .valueTooLong(type) }
        case .mobilityTicket:
            guard length <= maxMobilityTicket else { throw .valueTooLong(type) }
        case .userHash:
            guard length == 32 else { throw .invalidLength(type) }
        case .messageIntegrity:
            guard length == 20 else { throw .invalidLength(type) }
        case .messageIntegritySHA256:
            // RFC 8489 §14.6: truncation to 16 bytes or more, in 4-byte steps.
            guard length >= 16, length <= 32, length & 3 == 0 else { throw .invalidLength(type) }
        case .fingerprint, .channelNumber, .lifetime, .requestedTransport, .requestedAddressFamily,
            .additionalAddressFamily, .connectionID:
            guard length == 4 else { throw .invalidLength(type) }
        case .reservationToken, .icmp:
            guard length == 8 else { throw .invalidLength(type) }
        case .evenPort:
            guard length == 1 else { throw .invalidLength(type) }
        case .dontFragment:
            guard length == 0 else { throw .invalidLength(type) }
        case .errorCode, .addressErrorCode:
            guard length >= 4 else { throw .invalidLength(type) }
            guard length - 4 <= maxText else { throw .valueTooLong(type) }
            let errorClass = bytes[valueOffset + 2] & 0x07
            let number = bytes[valueOffset + 3]
            guard (3...6).contains(errorClass), number < 100 else { throw .invalidValue(type) }
        case .unknownAttributes:
            guard length & 1 == 0 else { throw .invalidLength(type) }
        case .passwordAlgorithm:
            guard length >= 4, 4 + Int(bytes.be16(valueOffset + 2)) <= length else { throw .invalidValue(type) }
        case .passwordAlgorithms:
            guard length >= 4 else { throw .invalidValue(type) }
            // Each entry: algorithm(2) parameter-length(2) parameters padded to 4.
            var p = 0
            while p < length {
                guard p + 4 <= length else { throw .invalidValue(type) }
                let parameters = Int(bytes.be16(valueOffset + p + 2))
                guard p + 4 + parameters <= length else { throw .invalidValue(type) }
                p += 4 + padded4(parameters)
            }
        default:
            break
        }
    }
}
