/// A parsed STUN message: a view over the caller's bytes plus the offsets of
/// the attributes found. Parsing validates framing and every known
/// attribute's value, so the accessors afterwards cannot fail on bad input:
/// they return nil only when an attribute is absent.
///
/// The view holds a raw pointer, never a copy: it is valid only while the
/// caller's buffer is. Parsing makes no heap allocation.
///
/// Rules applied (RFC 8489 §14):
/// - attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
///   FINGERPRINT, and after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, are
///   ignored: skipped over (bounds-checked) but neither validated, recorded nor
///   iterated;
/// - anything after FINGERPRINT is an error (`.attributeAfterFingerprint`);
/// - a second copy of a type in `STUNAttributeType.rejectsDuplicates` is an
///   error; for other singular types the first copy wins.
public struct STUNMessage {
    /// Exactly the message: header plus `length` bytes (trailing bytes of the
    /// input beyond the header's length are not part of it).
    public let bytes: UnsafeRawBufferPointer
    public let messageType: STUNMessageType
    public let transactionID: TransactionID

    /// Per `AttributeSlot`: (offset of the attribute's type field) - 16, or 0
    /// when absent. The bias keeps every possible offset (20...65548) in 16 bits.
    @usableFromInline
    var slots: InlineArray<32, UInt16>

    /// Parses the STUN message at the start of `datagram`.
    public init(parsing datagram: UnsafeRawBufferPointer) throws(STUNError) {
        guard datagram.count >= STUNHeader.size else { throw .truncatedHeader }
        let rawType = datagram.be16(0)
        guard rawType & 0xC000 == 0 else { throw .notSTUN }
        guard datagram.be32(4) == STUNHeader.magicCookie else { throw .badMagicCookie }
        let length = Int(datagram.be16(2))
        guard length & 3 == 0 else { throw .lengthNotMultipleOfFour }
        let end = STUNHeader.size + length
        guard end <= datagram.count else { throw .lengthPastEnd }

        let bytes = UnsafeRawBufferPointer(rebasing: datagram[0..<end])
        var slots = InlineArray<32, UInt16>(repeating: 0)
        var phase = IntegrityPhase.open
        var offset = STUNHeader.size
        while offset < end {
            // end and offset are multiples of 4, so the 4-byte TLV header fits.
            let type = STUNAttributeType(bytes.be16(offset))
            let valueLength = Int(bytes.be16(offset + 2))
            let next = offset + 4 + padded4(valueLength)
            guard next <= end else { throw .attributeOverrun(type) }
            guard phase != .afterFingerprint else { throw .attributeAfterFingerprint }
            if phase.admits(type) {
                try AttributeValidation.validate(type, bytes, valueOffset: offset + 4, length: valueLength)
                if let slot = AttributeSlot(type) {
                    if slots[slot.rawValue] == 0 {
                        slots[slot.rawValue] = UInt16(truncatingIfNeeded: offset - 16)
                    } else if type.rejectsDuplicates {
                        throw .duplicateAttribute(type)
                    }
                }
                phase.advance(past: type)
            }
            offset = next
        }
        self.bytes = bytes
        self.messageType = STUNMessageType(rawValue: rawType)
        self.transactionID = TransactionID(loadingFrom: bytes.baseAddress! + 8)
        self.slots = slots
    }

    /// The message's method.
    @inlinable
    public var method: STUNMethod { messageType.method }

    /// The message's class.
    @inlinable
    public var messageClass: STUNClass { messageType.messageClass }

    /// The header's length field: bytes after the header.
    @inlinable
    public var length: Int { bytes.count - STUNHeader.size }

    /// Offset of the first recorded attribute of `slot`'s type (its type field), or nil.
    @inlinable
    func offset(_ slot: AttributeSlot) -> Int? {
        let biased = slots[slot.rawValue]
        return biased == 0 ? nil : Int(biased) + 16
    }

    /// The first recorded attribute of `slot`'s type.
    @inlinable
    func attribute(_ slot: AttributeSlot) -> STUNAttribute? {
        guard let offset = offset(slot) else { return nil }
        return STUNAttribute(in: bytes, at: offset)
    }

    /// True when an attribute of `type` is present and meaningful (not ignored).
    @inlinable
    public func contains(_ type: STUNAttributeType) -> Bool {
        if let slot = AttributeSlot(type) { return offset(slot) != nil }
        return first(type) != nil
    }

    /// The first meaningful attribute of `type`, by walking the message.
    @inlinable
    public func first(_ type: STUNAttributeType) -> STUNAttribute? {
        if let slot = AttributeSlot(type) { return attribute(slot) }
        var it = attributes
        while let a = it.next() {
            if a.type == type { return a }
        }
        return nil
    }
}

/// Where the walk stands relative to the integrity attributes, which decides
/// whether the next attribute is meaningful (RFC 8489 §14.5–14.7).
@usableFromInline
enum IntegrityPhase {
    case open, afterIntegrity, afterIntegritySHA256, afterFingerprint

    @inlinable
    func admits(_ type: STUNAttributeType) -> Bool {
        switch self {
        case .open: return true
        case .afterIntegrity: return type == .messageIntegritySHA256 || type == .fingerprint
        case .afterIntegritySHA256: return type == .fingerprint
        case .afterFingerprint: return false
        }
    }

    @inlinable
    mutating func advance(past type: STUNAttributeType) {
        switch type {
        case .messageIntegrity: self = .afterIntegrity
        case .messageIntegritySHA256: self = .afterIntegritySHA256
        case .fingerprint: self = .afterFingerprint
        default: break
        }
    }
}
