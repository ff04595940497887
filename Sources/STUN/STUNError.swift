/// Why a datagram could not be parsed as STUN or ChannelData, or why an encode
/// could not complete.
///
/// Every case carries only trivial payloads so throwing one never allocates;
/// the parser and encoder use typed throws (`throws(STUNError)`).
public enum STUNError: Error, Equatable, Hashable, Sendable {
    // MARK: Framing
    /// Fewer than the 20 bytes of a STUN header.
    case truncatedHeader
    /// The two most significant bits of the first byte are not 0b00.
    case notSTUN
    /// The magic cookie is not 0x2112A442 (an RFC 3489 message or not STUN at all).
    case badMagicCookie
    /// The header's message length is not a multiple of 4.
    case lengthNotMultipleOfFour
    /// The header's message length runs past the bytes available.
    case lengthPastEnd
    /// On a stream: the first byte's top bits are 0b10 or 0b11, so the frame
    /// is neither STUN nor ChannelData and its end cannot be found.
    case notSTUNOrChannelData

    // MARK: Attributes
    /// An attribute's header or padded value runs past the end of the message.
    case attributeOverrun(STUNAttributeType)
    /// An attribute's length is wrong for its type (e.g. LIFETIME that is not 4 bytes).
    case invalidLength(STUNAttributeType)
    /// A variable-length value longer than the RFC allows (USERNAME > 513 bytes,
    /// REALM / NONCE / SOFTWARE / reason phrase > 763 bytes).
    case valueTooLong(STUNAttributeType)
    /// An address attribute whose family is neither 0x01 (IPv4) nor 0x02 (IPv6),
    /// or whose length does not match its family.
    case badAddressFamily(STUNAttributeType)
    /// A value whose contents are out of range (ERROR-CODE class outside 3...6,
    /// a malformed PASSWORD-ALGORITHMS list, ...).
    case invalidValue(STUNAttributeType)
    /// A second copy of a singular attribute the server acts on (see
    /// `STUNAttributeType.rejectsDuplicates`).
    case duplicateAttribute(STUNAttributeType)
    /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    case attributeAfterFingerprint
    /// A message lacks an attribute its type requires (e.g. a Send indication
    /// without XOR-PEER-ADDRESS or DATA).
    case missingAttribute(STUNAttributeType)
    /// The message has the wrong type for the requested interpretation.
    case wrongMessageType

    // MARK: Encoding and keys
    /// The caller's output buffer has no room for what was asked.
    case bufferTooSmall
    /// The message would exceed the 16-bit length field.
    case messageTooLong
    /// An argument is out of range for the wire format (error code outside
    /// 300...699, reason phrase too long, ...).
    case invalidArgument
    /// A key longer than `IntegrityKey.capacity` bytes.
    case keyTooLong

    // MARK: ChannelData
    /// Fewer than 4 bytes, or fewer bytes than the header's length promises.
    case truncatedChannelData
    /// A channel number outside 0x4000...0x4FFF (RFC 8656 §12).
    case invalidChannelNumber(UInt16)
}
