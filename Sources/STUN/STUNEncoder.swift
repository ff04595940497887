/// Writes a STUN message into a caller-owned buffer, attribute by attribute,
/// keeping the header's length field current after every append. Never
/// allocates; running out of room throws `.bufferTooSmall` (the buffer keeps
/// the message as it was before the failed append).
///
/// Integrity attributes go last: `appendMessageIntegrity`, then optionally
/// `appendMessageIntegritySHA256`, then `appendFingerprint` (RFC 8489 §14.5–14.7).
/// Because the length field already counts each attribute when it is hashed,
/// the HMAC and CRC run straight over the buffer with no patching.
public struct STUNEncoder {
    public let buffer: UnsafeMutableRawBufferPointer
    public let transactionID: TransactionID
    /// Bytes written so far (header included).
    @inlinable
    public var count: Int { written }
    @usableFromInline var written: Int
    /// Byte used to pad values to 4 bytes. RFC 8489 says padding is ignored on
    /// receipt; 0 is conventional, RFC 5769's vectors use 0x20.
    public var paddingByte: UInt8 = 0

    /// Starts a message: writes the 20-byte header with length 0.
    @inlinable
    public init(
        into buffer: UnsafeMutableRawBufferPointer, type: STUNMessageType, transactionID: TransactionID
    ) throws(STUNError) {
        guard buffer.count >= STUNHeader.size, let base = buffer.baseAddress else { throw .bufferTooSmall }
        self.buffer = buffer
        self.transactionID = transactionID
        self.written = STUNHeader.size
        base.storeBytes(of: type.rawValue.bigEndian, as: UInt16.self)
        (base + 2).storeBytes(of: UInt16(0), as: UInt16.self)
        (base + 4).storeBytes(of: STUNHeader.magicCookie.bigEndian, as: UInt32.self)
        transactionID.store(to: base + 8)
    }

    /// `init(into:type:transactionID:)` from a method and class.
    @inlinable
    public init(
        into buffer: UnsafeMutableRawBufferPointer, method: STUNMethod, class messageClass: STUNClass,
        transactionID: TransactionID
    ) throws(STUNError) {
        try self.init(
            into: buffer, type: STUNMessageType(method: method, class: messageClass), transactionID: transactionID)
    }

    /// The message written so far.
    @inlinable
    public var message: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<count]) }

    /// Writes the TLV header and padding for a value of `length` bytes, bumps
    /// the length field, and returns where the value goes.
    @inlinable
    public mutating func reserve(_ type: STUNAttributeType, length: Int) throws(STUNError) -> UnsafeMutableRawPointer {
        guard length >= 0, length <= 0xFFFF else { throw .invalidArgument }
        let total = count + 4 + padded4(length)
        guard total - STUNHeader.size <= 0xFFFF else { throw .messageTooLong }
        guard total <= buffer.count else { throw .bufferTooSmall }
        let base = buffer.baseAddress!
        let at = base + count
        at.storeBytes(of: type.rawValue.bigEndian, as: UInt16.self)
        (at + 2).storeBytes(of: UInt16(length).bigEndian, as: UInt16.self)
        for i in (count + 4 + length)..<total {
            buffer[i] = paddingByte
        }
        written = total
        (base + 2).storeBytes(of: UInt16(total - STUNHeader.size).bigEndian, as: UInt16.self)
        return at + 4
    }

    // MARK: Raw values

    /// Any attribute from raw value bytes (`value` may not overlap the output).
    @inlinable
    public mutating func append(_ type: STUNAttributeType, bytes value: UnsafeRawBufferPointer) throws(STUNError) {
        let dst = try reserve(type, length: value.count)
        if let src = value.baseAddress, value.count > 0 {
            dst.copyMemory(from: src, byteCount: value.count)
        }
    }

    /// Any attribute whose value is a string's UTF-8 bytes (control path).
    public mutating func append(_ type: STUNAttributeType, utf8 value: String) throws(STUNError) {
        var value = value
        var failure: STUNError?
        value.withUTF8 { utf8 in
            do throws(STUNError) {
                try append(type, bytes: UnsafeRawBufferPointer(utf8))
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// A 32-bit value (LIFETIME, CONNECTION-ID, PRIORITY, ...).
    @inlinable
    public mutating func append(_ type: STUNAttributeType, uint32 value: UInt32) throws(STUNError) {
        try reserve(type, length: 4).storeBytes(of: value.bigEndian, as: UInt32.self)
    }

    /// A 64-bit value (RESERVATION-TOKEN, ICE-CONTROLLING, ...).
    @inlinable
    public mutating func append(_ type: STUNAttributeType, uint64 value: UInt64) throws(STUNError) {
        try reserve(type, length: 8).storeBytes(of: value.bigEndian, as: UInt64.self)
    }

    // MARK: Addresses

    /// A plain address attribute (MAPPED-ADDRESS, ALTERNATE-SERVER).
    @inlinable
    public mutating func append(_ type: STUNAttributeType, address: TransportAddress) throws(STUNError) {
        let dst = try reserve(type, length: AddressCodec.valueLength(address.ip.family))
        AddressCodec.encode(address, xor: nil, to: dst)
    }

    /// An XOR address attribute (XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS).
    @inlinable
    public mutating func append(_ type: STUNAttributeType, xorAddress address: TransportAddress) throws(STUNError) {
        let dst = try reserve(type, length: AddressCodec.valueLength(address.ip.family))
        AddressCodec.encode(address, xor: transactionID, to: dst)
    }

    // MARK: TURN values

    /// CHANNEL-NUMBER: the number then 16 reserved bits.
    @inlinable
    public mutating func appendChannelNumber(_ number: UInt16) throws(STUNError) {
        try append(.channelNumber, uint32: UInt32(number) << 16)
    }

    /// LIFETIME in seconds.
    @inlinable
    public mutating func appendLifetime(_ seconds: UInt32) throws(STUNError) {
        try append(.lifetime, uint32: seconds)
    }

    /// REQUESTED-TRANSPORT: protocol number then 24 reserved bits.
    @inlinable
    public mutating func appendRequestedTransport(_ ipProtocol: UInt8) throws(STUNError) {
        try append(.requestedTransport, uint32: UInt32(ipProtocol) << 24)
    }

    /// REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY: family byte then 24 reserved bits.
    @inlinable
    public mutating func appendAddressFamily(_ type: STUNAttributeType, family: UInt8) throws(STUNError) {
        try append(type, uint32: UInt32(family) << 24)
    }

    /// EVEN-PORT with its R bit.
    @inlinable
    public mutating func appendEvenPort(reserveNext: Bool) throws(STUNError) {
        try reserve(.evenPort, length: 1).storeBytes(of: reserveNext ? 0x80 : 0, as: UInt8.self)
    }

    /// DONT-FRAGMENT (no value).
    @inlinable
    public mutating func appendDontFragment() throws(STUNError) {
        _ = try reserve(.dontFragment, length: 0)
    }

    /// CONNECTION-ID (RFC 6062 §6.2.1): the 32-bit number naming one peer
    /// data connection of a TCP allocation.
    @inlinable
    public mutating func appendConnectionID(_ id: UInt32) throws(STUNError) {
        try append(.connectionID, uint32: id)
    }

    /// ICMP: 16 reserved bits, type, code, 32-bit error data.
    @inlinable
    public mutating func appendICMP(_ value: ICMPValue) throws(STUNError) {
        let dst = try reserve(.icmp, length: 8)
        dst.storeBytes(of: UInt16(0), as: UInt16.self)
        (dst + 2).storeBytes(of: value.type, as: UInt8.self)
        (dst + 3).storeBytes(of: value.code, as: UInt8.self)
        (dst + 4).storeBytes(of: value.data.bigEndian, as: UInt32.self)
    }

    // MARK: Errors

    /// ERROR-CODE with a code in 300...699 and a reason of at most 763 UTF-8 bytes.
    @inlinable
    public mutating func appendErrorCode(_ code: Int, reason: UnsafeRawBufferPointer) throws(STUNError) {
        try appendCode(.errorCode, firstByte: 0, code: code, reason: reason)
    }

    /// ERROR-CODE with a String reason (control path).
    public mutating func appendErrorCode(_ code: Int, reason: String) throws(STUNError) {
        let bytes = Array(reason.utf8)
        var failure: STUNError?
        bytes.withUnsafeBytes { raw in
            do throws(STUNError) { try appendErrorCode(code, reason: raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// ADDRESS-ERROR-CODE: the failed family's wire byte, a code and a reason.
    @inlinable
    public mutating func appendAddressErrorCode(
        family: UInt8, code: Int, reason: UnsafeRawBufferPointer
    ) throws(STUNError) {
        try appendCode(.addressErrorCode, firstByte: family, code: code, reason: reason)
    }

    @inlinable
    mutating func appendCode(
        _ type: STUNAttributeType, firstByte: UInt8, code: Int, reason: UnsafeRawBufferPointer
    ) throws(STUNError) {
        guard (300...699).contains(code), reason.count <= 763 else { throw .invalidArgument }
        let dst = try reserve(type, length: 4 + reason.count)
        dst.storeBytes(of: firstByte, as: UInt8.self)
        (dst + 1).storeBytes(of: 0, as: UInt8.self)
        (dst + 2).storeBytes(of: UInt8(code / 100), as: UInt8.self)
        (dst + 3).storeBytes(of: UInt8(code % 100), as: UInt8.self)
        if let src = reason.baseAddress, reason.count > 0 {
            (dst + 4).copyMemory(from: src, byteCount: reason.count)
        }
    }

    /// UNKNOWN-ATTRIBUTES listing `types`.
    @inlinable
    public mutating func appendUnknownAttributes(_ types: UnknownAttributeList) throws(STUNError) {
        let dst = try reserve(.unknownAttributes, length: 2 * types.count)
        for i in 0..<types.count {
            (dst + 2 * i).storeBytes(of: types[i].rawValue.bigEndian, as: UInt16.self)
        }
    }

    // MARK: Password algorithms

    /// PASSWORD-ALGORITHMS listing `algorithms` with empty parameters (MD5 and
    /// SHA-256 take none).
    @inlinable
    public mutating func appendPasswordAlgorithms(_ algorithms: some Collection<PasswordAlgorithmID>) throws(STUNError) {
        let dst = try reserve(.passwordAlgorithms, length: 4 * algorithms.count)
        var p = dst
        for a in algorithms {
            p.storeBytes(of: a.rawValue.bigEndian, as: UInt16.self)
            (p + 2).storeBytes(of: UInt16(0), as: UInt16.self)
            p += 4
        }
    }

    /// PASSWORD-ALGORITHM with empty parameters.
    @inlinable
    public mutating func appendPasswordAlgorithm(_ algorithm: PasswordAlgorithmID) throws(STUNError) {
        try append(.passwordAlgorithm, uint32: UInt32(algorithm.rawValue) << 16)
    }

    // MARK: Integrity

    /// MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) over everything written so far.
    @inlinable
    public mutating func appendMessageIntegrity(key: IntegrityKey) throws(STUNError) {
        let start = count
        let dst = try reserve(.messageIntegrity, length: MessageIntegrity.sha1Length)
        MessageIntegrity.hmac(
            sha256: false, key: key, message: UnsafeRawBufferPointer(buffer), end: start,
            patchedLength: count - STUNHeader.size, out: dst.assumingMemoryBound(to: UInt8.self))
    }

    /// MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256 with `key`), truncated to `length`
    /// bytes (16...32, a multiple of 4).
    @inlinable
    public mutating func appendMessageIntegritySHA256(key: IntegrityKey, length: Int = 32) throws(STUNError) {
        guard length >= 16, length <= 32, length & 3 == 0 else { throw .invalidArgument }
        let start = count
        let dst = try reserve(.messageIntegritySHA256, length: length)
        var full: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &full) { out in
            MessageIntegrity.hmac(
                sha256: true, key: key, message: UnsafeRawBufferPointer(buffer), end: start,
                patchedLength: count - STUNHeader.size, out: out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            dst.copyMemory(from: out.baseAddress!, byteCount: length)
        }
    }

    /// FINGERPRINT over everything written so far; must be the last append.
    @inlinable
    public mutating func appendFingerprint() throws(STUNError) {
        let start = count
        let dst = try reserve(.fingerprint, length: 4)
        let crc = Fingerprint.compute(UnsafeRawBufferPointer(rebasing: buffer[0..<start]))
        dst.storeBytes(of: crc.bigEndian, as: UInt32.self)
    }
}
