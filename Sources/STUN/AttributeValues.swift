/// ERROR-CODE's value (RFC 8489 §14.8): a code 300...699 and a reason phrase.
public struct ErrorCodeValue {
    /// class * 100 + number, e.g. 401.
    public let code: Int
    /// The UTF-8 reason phrase bytes as sent.
    public let reasonBytes: UnsafeRawBufferPointer

    @inlinable
    init(code: Int, reasonBytes: UnsafeRawBufferPointer) {
        self.code = code
        self.reasonBytes = reasonBytes
    }

    /// The reason phrase decoded as UTF-8 (invalid sequences repaired). Control path only.
    public var reason: String { String(decoding: reasonBytes, as: UTF8.self) }
}

/// ADDRESS-ERROR-CODE's value (RFC 8656 §18.13): which family failed, a code
/// and a reason phrase.
public struct AddressErrorCodeValue {
    /// The wire family byte (0x01 IPv4, 0x02 IPv6).
    public let family: UInt8
    public let code: Int
    public let reasonBytes: UnsafeRawBufferPointer

    @inlinable
    init(family: UInt8, code: Int, reasonBytes: UnsafeRawBufferPointer) {
        self.family = family
        self.code = code
        self.reasonBytes = reasonBytes
    }

    public var reason: String { String(decoding: reasonBytes, as: UTF8.self) }
}

/// A password algorithm number (RFC 8489 §18.5).
public struct PasswordAlgorithmID: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let md5 = PasswordAlgorithmID(rawValue: 0x0001)
    public static let sha256 = PasswordAlgorithmID(rawValue: 0x0002)
}

/// One entry of PASSWORD-ALGORITHM / PASSWORD-ALGORITHMS.
public struct PasswordAlgorithm {
    public let id: PasswordAlgorithmID
    /// Parameters (empty for MD5 and SHA-256).
    public let parameters: UnsafeRawBufferPointer

    @inlinable
    init(id: PasswordAlgorithmID, parameters: UnsafeRawBufferPointer) {
        self.id = id
        self.parameters = parameters
    }
}

/// Walks the entries of a PASSWORD-ALGORITHMS value. The parser checked the
/// list's framing; the walk re-checks bounds so it cannot leave the value.
public struct PasswordAlgorithmIterator: IteratorProtocol, Sequence {
    @usableFromInline let value: UnsafeRawBufferPointer
    @usableFromInline var offset = 0

    @inlinable
    init(_ value: UnsafeRawBufferPointer) { self.value = value }

    @inlinable
    public mutating func next() -> PasswordAlgorithm? {
        guard offset + 4 <= value.count else { return nil }
        let id = PasswordAlgorithmID(rawValue: value.be16(offset))
        let count = Int(value.be16(offset + 2))
        guard offset + 4 + count <= value.count else {
            offset = value.count
            return nil
        }
        let parameters = UnsafeRawBufferPointer(rebasing: value[(offset + 4)..<(offset + 4 + count)])
        offset += 4 + padded4(count)
        return PasswordAlgorithm(id: id, parameters: parameters)
    }
}

/// Walks the 16-bit types listed in UNKNOWN-ATTRIBUTES.
public struct UnknownAttributesIterator: IteratorProtocol, Sequence {
    @usableFromInline let value: UnsafeRawBufferPointer
    @usableFromInline var offset = 0

    @inlinable
    init(_ value: UnsafeRawBufferPointer) { self.value = value }

    @inlinable
    public mutating func next() -> STUNAttributeType? {
        guard offset + 2 <= value.count else { return nil }
        defer { offset += 2 }
        return STUNAttributeType(value.be16(offset))
    }
}

/// ICMP attribute value (RFC 8656 §18.13): the ICMP type and code a relay
/// received from the peer, plus the 32-bit error data.
public struct ICMPValue: Hashable, Sendable {
    public var type: UInt8
    public var code: UInt8
    public var data: UInt32

    @inlinable
    public init(type: UInt8, code: UInt8, data: UInt32) {
        self.type = type
        self.code = code
        self.data = data
    }
}
