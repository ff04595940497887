/// The attributes of RFC 5780 (NAT behaviour discovery) a Binding request
/// may carry: CHANGE-REQUEST, RESPONSE-PORT and PADDING. The answer's
/// RESPONSE-ORIGIN and OTHER-ADDRESS are plain (not XOR'd) addresses,
/// written with `STUNEncoder.append(_:address:)`.
public struct NATDiscoveryRequest: Equatable, Sendable {
    /// CHANGE-REQUEST's "change IP" (0x4) and "change port" (0x2) flags.
    public var changeIP = false
    public var changePort = false
    /// Whether CHANGE-REQUEST was present at all.
    public var hasChangeRequest = false
    /// RESPONSE-PORT: the port on the client's IP address the answer goes to.
    public var responsePort: UInt16?
    /// PADDING's length, when present.
    public var padding: Int?

    public init() {}

    /// Reads the three attributes of `message` (their first copies). Throws
    /// `.invalidLength` for a CHANGE-REQUEST or RESPONSE-PORT whose value
    /// is not 4 bytes (RFC 5780 §7.2, §7.5), `.invalidValue` for a RESPONSE-PORT of 0.
    public init(_ message: STUNMessage) throws(STUNError) {
        var seenChange = false
        var seenPort = false
        for attribute in message.attributes {
            switch attribute.type {
            case .changeRequest where !seenChange:
                seenChange = true
                guard attribute.value.count == 4 else { throw .invalidLength(.changeRequest) }
                let flags = attribute.value[3]
                changeIP = flags & 0x04 != 0
                changePort = flags & 0x02 != 0
                hasChangeRequest = true
            case .responsePort where !seenPort:
                seenPort = true
                guard attribute.value.count == 4 else { throw .invalidLength(.responsePort) }
                let port = UInt16(attribute.value[0]) << 8 | UInt16(attribute.value[1])
                guard port != 0 else { throw .invalidValue(.responsePort) }
                responsePort = port
            case .padding where padding == nil:
                padding = attribute.value.count
            default:
                break
            }
        }
    }
}

extension STUNEncoder {
    /// CHANGE-REQUEST (RFC 5780 §7.2): a 32-bit field with the flags in its last byte.
    public mutating func appendChangeRequest(changeIP: Bool, changePort: Bool) throws(STUNError) {
        try append(.changeRequest, uint32: (changeIP ? 0x04 : 0) | (changePort ? 0x02 : 0))
    }

    /// RESPONSE-PORT (RFC 5780 §7.5): the port, then two bytes of padding.
    public mutating func appendResponsePort(_ port: UInt16) throws(STUNError) {
        try append(.responsePort, uint32: UInt32(port) << 16)
    }

    /// PADDING (RFC 5780 §7.6) of `length` zero bytes.
    public mutating func appendPadding(length: Int) throws(STUNError) {
        let dst = try reserve(.padding, length: length)
        dst.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }
}
