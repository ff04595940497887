// Typed accessors. Each returns nil when the attribute is absent; values were
// validated by the parser, so decoding here cannot fail.

extension STUNMessage {
    @inlinable
    func value(_ slot: AttributeSlot) -> UnsafeRawBufferPointer? { attribute(slot)?.value }

    // MARK: Addresses

    /// MAPPED-ADDRESS.
    @inlinable
    public var mappedAddress: TransportAddress? {
        value(.mappedAddress).flatMap { AddressCodec.decode($0, xor: nil) }
    }

    /// XOR-MAPPED-ADDRESS, decoded.
    @inlinable
    public var xorMappedAddress: TransportAddress? {
        value(.xorMappedAddress).flatMap { AddressCodec.decode($0, xor: transactionID) }
    }

    /// ALTERNATE-SERVER (not XORed).
    @inlinable
    public var alternateServer: TransportAddress? {
        value(.alternateServer).flatMap { AddressCodec.decode($0, xor: nil) }
    }

    /// The first XOR-PEER-ADDRESS; see `xorPeerAddresses` for all of them.
    @inlinable
    public var xorPeerAddress: TransportAddress? {
        value(.xorPeerAddress).flatMap { AddressCodec.decode($0, xor: transactionID) }
    }

    /// The first XOR-RELAYED-ADDRESS; see `xorRelayedAddresses` for both of a dual allocation.
    @inlinable
    public var xorRelayedAddress: TransportAddress? {
        value(.xorRelayedAddress).flatMap { AddressCodec.decode($0, xor: transactionID) }
    }

    // MARK: Credentials

    /// USERNAME bytes (at most 513).
    @inlinable
    public var usernameBytes: UnsafeRawBufferPointer? { value(.username) }

    /// USERNAME as a String (control path).
    public var username: String? { usernameBytes.map { String(decoding: $0, as: UTF8.self) } }

    /// USERHASH: 32 bytes.
    @inlinable
    public var userHash: UnsafeRawBufferPointer? { value(.userHash) }

    /// REALM bytes (at most 763).
    @inlinable
    public var realmBytes: UnsafeRawBufferPointer? { value(.realm) }

    public var realm: String? { realmBytes.map { String(decoding: $0, as: UTF8.self) } }

    /// NONCE bytes (at most 763).
    @inlinable
    public var nonceBytes: UnsafeRawBufferPointer? { value(.nonce) }

    public var nonce: String? { nonceBytes.map { String(decoding: $0, as: UTF8.self) } }

    /// MESSAGE-INTEGRITY's 20-byte HMAC.
    @inlinable
    public var messageIntegrity: UnsafeRawBufferPointer? { value(.messageIntegrity) }

    /// MESSAGE-INTEGRITY-SHA256's HMAC (16...32 bytes).
    @inlinable
    public var messageIntegritySHA256: UnsafeRawBufferPointer? { value(.messageIntegritySHA256) }

    /// FINGERPRINT's value as sent.
    @inlinable
    public var fingerprint: UInt32? { value(.fingerprint).map { $0.be32(0) } }

    /// PASSWORD-ALGORITHM.
    @inlinable
    public var passwordAlgorithm: PasswordAlgorithm? {
        value(.passwordAlgorithm).flatMap {
            var entries = PasswordAlgorithmIterator($0)
            return entries.next()
        }
    }

    /// PASSWORD-ALGORITHMS entries, in order; nil when absent.
    @inlinable
    public var passwordAlgorithms: PasswordAlgorithmIterator? {
        value(.passwordAlgorithms).map { PasswordAlgorithmIterator($0) }
    }

    /// PASSWORD-ALGORITHMS value bytes as sent, which a server compares
    /// byte for byte with what it offered (RFC 8489 §9.2.4).
    @inlinable
    public var passwordAlgorithmsBytes: UnsafeRawBufferPointer? { value(.passwordAlgorithms) }

    // MARK: Errors and information

    /// ERROR-CODE.
    @inlinable
    public var errorCode: ErrorCodeValue? {
        guard let v = value(.errorCode) else { return nil }
        return ErrorCodeValue(
            code: Int(v[2] & 0x07) * 100 + Int(v[3]),
            reasonBytes: UnsafeRawBufferPointer(rebasing: v[4...]))
    }

    /// ADDRESS-ERROR-CODE.
    @inlinable
    public var addressErrorCode: AddressErrorCodeValue? {
        guard let v = value(.addressErrorCode) else { return nil }
        return AddressErrorCodeValue(
            family: v[0], code: Int(v[2] & 0x07) * 100 + Int(v[3]),
            reasonBytes: UnsafeRawBufferPointer(rebasing: v[4...]))
    }

    /// UNKNOWN-ATTRIBUTES entries; nil when absent.
    @inlinable
    public var unknownAttributes: UnknownAttributesIterator? {
        value(.unknownAttributes).map { UnknownAttributesIterator($0) }
    }

    /// SOFTWARE bytes.
    @inlinable
    public var softwareBytes: UnsafeRawBufferPointer? { value(.software) }

    public var software: String? { softwareBytes.map { String(decoding: $0, as: UTF8.self) } }

    // MARK: TURN

    /// CHANNEL-NUMBER's number (range not checked here: 400 is the server's call).
    @inlinable
    public var channelNumber: UInt16? { value(.channelNumber).map { $0.be16(0) } }

    /// LIFETIME in seconds.
    @inlinable
    public var lifetime: UInt32? { value(.lifetime).map { $0.be32(0) } }

    /// DATA bytes.
    @inlinable
    public var data: UnsafeRawBufferPointer? { value(.data) }

    /// REQUESTED-ADDRESS-FAMILY's wire family byte (0x01, 0x02; anything else
    /// deserves 440 from the server, so it is passed through).
    @inlinable
    public var requestedAddressFamily: UInt8? { value(.requestedAddressFamily).map { $0[0] } }

    /// ADDITIONAL-ADDRESS-FAMILY's wire family byte.
    @inlinable
    public var additionalAddressFamily: UInt8? { value(.additionalAddressFamily).map { $0[0] } }

    /// EVEN-PORT's R bit (reserve the next port too).
    @inlinable
    public var evenPort: Bool? { value(.evenPort).map { $0[0] & 0x80 != 0 } }

    /// REQUESTED-TRANSPORT's IP protocol number (17 UDP, 6 TCP).
    @inlinable
    public var requestedTransport: UInt8? { value(.requestedTransport).map { $0[0] } }

    /// True when DONT-FRAGMENT is present.
    @inlinable
    public var dontFragment: Bool { offset(.dontFragment) != nil }

    /// RESERVATION-TOKEN's 8 bytes as a number.
    @inlinable
    public var reservationToken: UInt64? { value(.reservationToken).map { $0.be64(0) } }

    /// ICMP.
    @inlinable
    public var icmp: ICMPValue? {
        value(.icmp).map { ICMPValue(type: $0[2], code: $0[3], data: $0.be32(4)) }
    }

    /// CONNECTION-ID (RFC 6062 §6.2.1): names a peer data connection in
    /// Connect responses, ConnectionAttempt indications and ConnectionBind requests.
    @inlinable
    public var connectionID: UInt32? { value(.connectionID).map { $0.be32(0) } }

    /// MOBILITY-TICKET (RFC 8016): empty when a client asks for mobility in
    /// an Allocate; the server's ticket in a Refresh.
    @inlinable
    public var mobilityTicket: UnsafeRawBufferPointer? { value(.mobilityTicket) }
}
