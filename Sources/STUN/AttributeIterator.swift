/// One attribute of a parsed message: its type and a view of its value
/// (without padding).
public struct STUNAttribute {
    public let type: STUNAttributeType
    /// The value bytes, `length` long, inside the message buffer.
    public let value: UnsafeRawBufferPointer
    /// Offset of the attribute's type field from the start of the message.
    public let offset: Int

    /// Reads the TLV at `offset`. The caller guarantees the TLV lies inside `bytes`
    /// (the parser checked it).
    @inlinable
    init(in bytes: UnsafeRawBufferPointer, at offset: Int) {
        self.type = STUNAttributeType(bytes.be16(offset))
        let length = Int(bytes.be16(offset + 2))
        self.value = UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + length)])
        self.offset = offset
    }
}

/// Walks the meaningful attributes of a parsed message in wire order
/// (attributes the parser ignores after MESSAGE-INTEGRITY are skipped).
public struct AttributeIterator: IteratorProtocol, Sequence {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var offset: Int
    @usableFromInline var phase: IntegrityPhase

    @inlinable
    init(_ bytes: UnsafeRawBufferPointer, from offset: Int = STUNHeader.size, phase: IntegrityPhase = .open) {
        self.bytes = bytes
        self.offset = offset
        self.phase = phase
    }

    @inlinable
    public mutating func next() -> STUNAttribute? {
        // The parser validated the framing; the bounds checks stay so that a
        // walk can never leave the buffer whatever the bytes are.
        while offset + 4 <= bytes.count {
            let attribute = offset
            let length = Int(bytes.be16(offset + 2))
            let next = offset + 4 + padded4(length)
            guard next <= bytes.count else {
                offset = bytes.count
                return nil
            }
            offset = next
            let type = STUNAttributeType(bytes.be16(attribute))
            if phase.admits(type) {
                phase.advance(past: type)
                return STUNAttribute(in: bytes, at: attribute)
            }
        }
        return nil
    }
}

/// Walks every meaningful copy of one address attribute (XOR-PEER-ADDRESS may
/// repeat in CreatePermission; XOR-RELAYED-ADDRESS twice in a dual allocation),
/// yielding decoded addresses. The parser validated each copy, so none is skipped.
public struct XORAddressIterator: IteratorProtocol, Sequence {
    @usableFromInline var attributes: AttributeIterator
    @usableFromInline let type: STUNAttributeType
    @usableFromInline let transactionID: TransactionID

    @inlinable
    init(_ message: STUNMessage, type: STUNAttributeType, slot: AttributeSlot) {
        // Start at the first copy (recorded by the parser, so meaningful) and
        // stop at the first integrity attribute: after it no address type is.
        if let first = message.offset(slot) {
            attributes = AttributeIterator(message.bytes, from: first)
        } else {
            attributes = AttributeIterator(message.bytes, from: message.bytes.count)
        }
        self.type = type
        self.transactionID = message.transactionID
    }

    @inlinable
    public mutating func next() -> TransportAddress? {
        while let a = attributes.next() {
            // An integrity attribute ends the meaningful region for these types.
            if a.type == .messageIntegrity || a.type == .messageIntegritySHA256 || a.type == .fingerprint {
                attributes = AttributeIterator(attributes.bytes, from: attributes.bytes.count)
                return nil
            }
            if a.type == type {
                return AddressCodec.decode(a.value, xor: transactionID)
            }
        }
        return nil
    }
}

extension STUNMessage {
    /// All meaningful attributes in wire order.
    @inlinable
    public var attributes: AttributeIterator { AttributeIterator(bytes) }

    /// Every XOR-PEER-ADDRESS, decoded, in wire order.
    @inlinable
    public var xorPeerAddresses: XORAddressIterator {
        XORAddressIterator(self, type: .xorPeerAddress, slot: .xorPeerAddress)
    }

    /// Every XOR-RELAYED-ADDRESS, decoded, in wire order.
    @inlinable
    public var xorRelayedAddresses: XORAddressIterator {
        XORAddressIterator(self, type: .xorRelayedAddress, slot: .xorRelayedAddress)
    }
}
