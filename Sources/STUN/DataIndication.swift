/// The TURN Data indication (RFC 8656 §11.6): how a relay hands a peer's
/// datagram to a client that has no channel bound. Header, XOR-PEER-ADDRESS,
/// DATA; no integrity. Built without allocation, optionally around a payload
/// that already sits in the buffer.
public enum DataIndication {
    /// Bytes in front of the payload: header, XOR-PEER-ADDRESS, DATA's TLV header.
    @inlinable
    public static func prefixSize(peerFamily: IPAddress.Family) -> Int {
        STUNHeader.size + 4 + AddressCodec.valueLength(peerFamily) + 4
    }

    /// Whole message size for a payload of `payloadLength` bytes.
    @inlinable
    public static func size(peerFamily: IPAddress.Family, payloadLength: Int) -> Int {
        prefixSize(peerFamily: peerFamily) + padded4(payloadLength)
    }

    /// Writes a Data indication around a payload already at
    /// `buffer[payloadOffset..<payloadOffset + payloadLength]`: the prefix ends
    /// exactly at `payloadOffset`, and zero padding follows the payload.
    /// Returns the message's range in `buffer`.
    @inlinable
    public static func encode(
        in buffer: UnsafeMutableRawBufferPointer, payloadOffset: Int, payloadLength: Int,
        peer: TransportAddress, transactionID: TransactionID
    ) throws(STUNError) -> Range<Int> {
        let prefix = prefixSize(peerFamily: peer.ip.family)
        guard payloadLength >= 0, payloadLength <= 0xFFFF - (prefix - STUNHeader.size) - 3 else {
            throw .messageTooLong
        }
        guard payloadOffset >= prefix, payloadOffset + padded4(payloadLength) <= buffer.count else {
            throw .bufferTooSmall
        }
        let start = payloadOffset - prefix
        let end = payloadOffset + padded4(payloadLength)
        // Invariant: start >= 0 and end <= buffer.count (checked above), so every
        // store below is inside the buffer.
        writePrefix(to: buffer.baseAddress! + start, payloadLength: payloadLength, peer: peer, transactionID: transactionID)
        for i in (payloadOffset + payloadLength)..<end {
            buffer[i] = 0
        }
        return start..<end
    }

    /// Writes the prefix of a Data indication (header, XOR-PEER-ADDRESS, DATA's
    /// TLV header) for a payload of `payloadLength` bytes, to be followed by
    /// the payload and `padded4(payloadLength) - payloadLength` zero bytes.
    /// `p` must have room for `prefixSize(peerFamily:)` bytes; the caller has
    /// checked `payloadLength` (at most 0xFFFF - prefix). Returns the prefix size.
    @inlinable @discardableResult
    public static func writePrefix(
        to p: UnsafeMutableRawPointer, payloadLength: Int, peer: TransportAddress, transactionID: TransactionID
    ) -> Int {
        let prefix = prefixSize(peerFamily: peer.ip.family)
        let type = STUNMessageType(method: .data, class: .indication)
        p.storeBytes(of: type.rawValue.bigEndian, as: UInt16.self)
        (p + 2).storeBytes(
            of: UInt16(prefix - STUNHeader.size + padded4(payloadLength)).bigEndian, as: UInt16.self)
        (p + 4).storeBytes(of: STUNHeader.magicCookie.bigEndian, as: UInt32.self)
        transactionID.store(to: p + 8)
        let addressLength = AddressCodec.valueLength(peer.ip.family)
        (p + 20).storeBytes(of: STUNAttributeType.xorPeerAddress.rawValue.bigEndian, as: UInt16.self)
        (p + 22).storeBytes(of: UInt16(addressLength).bigEndian, as: UInt16.self)
        AddressCodec.encode(peer, xor: transactionID, to: p + 24)
        let data = p + 24 + addressLength
        data.storeBytes(of: STUNAttributeType.data.rawValue.bigEndian, as: UInt16.self)
        (data + 2).storeBytes(of: UInt16(payloadLength).bigEndian, as: UInt16.self)
        return prefix
    }

    /// Writes a Data indication at the start of `buffer`, copying `payload` in
    /// (moved, so it may overlap `buffer`). Returns the message size.
    @inlinable
    public static func encode(
        into buffer: UnsafeMutableRawBufferPointer, payload: UnsafeRawBufferPointer,
        peer: TransportAddress, transactionID: TransactionID
    ) throws(STUNError) -> Int {
        let prefix = prefixSize(peerFamily: peer.ip.family)
        guard prefix + padded4(payload.count) <= buffer.count else { throw .bufferTooSmall }
        if let src = payload.baseAddress, payload.count > 0 {
            (buffer.baseAddress! + prefix).copyMemory(from: src, byteCount: payload.count)
        }
        return try encode(
            in: buffer, payloadOffset: prefix, payloadLength: payload.count, peer: peer,
            transactionID: transactionID
        ).count
    }
}

/// The two things a relay needs from a Send indication (RFC 8656 §11.4): where
/// to send and what.
public struct SendIndication {
    public let peer: TransportAddress
    public let data: UnsafeRawBufferPointer

    /// Checks the type (Send, indication) and picks XOR-PEER-ADDRESS and DATA.
    @inlinable
    public init(_ message: STUNMessage) throws(STUNError) {
        guard message.method == .send, message.messageClass == .indication else { throw .wrongMessageType }
        guard let peer = message.xorPeerAddress else { throw .missingAttribute(.xorPeerAddress) }
        guard let data = message.data else { throw .missingAttribute(.data) }
        self.peer = peer
        self.data = data
    }

    /// Parses `datagram` and extracts the Send indication's peer and data.
    @inlinable
    public init(parsing datagram: UnsafeRawBufferPointer) throws(STUNError) {
        try self.init(STUNMessage(parsing: datagram))
    }
}
