/// Up to `capacity` attribute types held inline: the comprehension-required
/// types a request carried that the server does not understand, ready to be
/// echoed in a 420 response's UNKNOWN-ATTRIBUTES. Extra types beyond the
/// capacity are dropped (the 420 is sent all the same).
public struct UnknownAttributeList: Sendable {
    public static let capacity = 16

    @usableFromInline var storage = InlineArray<16, UInt16>(repeating: 0)
    @usableFromInline var stored = 0

    /// Number of types listed.
    @inlinable
    public var count: Int { stored }

    @inlinable
    public init() {}

    @inlinable
    public var isEmpty: Bool { count == 0 }

    /// Adds `type` unless it is already listed or the list is full.
    @inlinable
    public mutating func insert(_ type: STUNAttributeType) {
        for i in 0..<count where storage[i] == type.rawValue { return }
        guard count < Self.capacity else { return }
        storage[count] = type.rawValue
        stored += 1
    }

    @inlinable
    public subscript(index: Int) -> STUNAttributeType {
        precondition(index >= 0 && index < count, "UnknownAttributeList index out of range")
        return STUNAttributeType(storage[index])
    }
}

extension STUNMessage {
    /// The meaningful comprehension-required attributes for which `isKnown`
    /// returns false (RFC 8489 §6.3.1: answer a request with 420 when non-empty).
    @inlinable
    public func unknownComprehensionRequired(
        isKnown: (STUNAttributeType) -> Bool
    ) -> UnknownAttributeList {
        var list = UnknownAttributeList()
        for a in attributes where a.type.isComprehensionRequired && !isKnown(a.type) {
            list.insert(a.type)
        }
        return list
    }

    /// `unknownComprehensionRequired(isKnown:)` with the types this module knows
    /// (`STUNAttributeType.isKnownToTURN`).
    @inlinable
    public var unknownComprehensionRequired: UnknownAttributeList {
        unknownComprehensionRequired { $0.isKnownToTURN }
    }
}
