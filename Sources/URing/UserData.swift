/// The 64-bit `user_data` of an SQE/CQE, packed as (kind, generation, slot).
///
/// ```
///  63      56 55                32 31                               0
/// +----------+--------------------+----------------------------------+
/// |   kind   |  generation (24)   |             slot (32)            |
/// +----------+--------------------+----------------------------------+
/// ```
///
/// `kind` says what the operation was (receive on a listener, receive on a
/// relay socket, send, timer, ...); the engine chooses the values, except
/// ``Kind/wake`` which the ring uses for its own eventfd read. `slot` indexes
/// the engine's table (allocation, send slot, socket); `generation` is bumped
/// each time a slot is reused, so a late CQE for a freed slot carries a stale
/// generation and can be recognised and dropped. Generations wrap at 2^24.
@frozen
public struct UserData: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    @inlinable @inline(__always)
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// What kind of operation a CQE belongs to. The engine defines its own
    /// constants (`static let relayReceive = UserData.Kind(rawValue: 2)`);
    /// 0xF0...0xFF are reserved for the ring itself.
    @frozen
    public struct Kind: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        @inlinable @inline(__always)
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        /// The ring's own read on its ``Waker`` eventfd.
        public static var wake: Kind { Kind(rawValue: 0xFF) }
        /// Operations the ring submits for its own bookkeeping (feature probes).
        public static var ringInternal: Kind { Kind(rawValue: 0xFE) }
    }

    /// Largest generation value; generations are taken modulo `generationMask + 1`.
    public static var generationMask: UInt32 { 0xFF_FFFF }

    /// Packs the three fields. `generation` is truncated to 24 bits.
    @inlinable @inline(__always)
    public init(kind: Kind, slot: UInt32, generation: UInt32 = 0) {
        rawValue =
            UInt64(kind.rawValue) << 56
            | UInt64(generation & 0xFF_FFFF) << 32
            | UInt64(slot)
    }

    @inlinable @inline(__always)
    public var kind: Kind { Kind(rawValue: UInt8(truncatingIfNeeded: rawValue >> 56)) }

    @inlinable @inline(__always)
    public var generation: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) & 0xFF_FFFF }

    @inlinable @inline(__always)
    public var slot: UInt32 { UInt32(truncatingIfNeeded: rawValue) }

    /// The generation that follows `generation`, wrapping within 24 bits.
    @inlinable @inline(__always)
    public static func nextGeneration(after generation: UInt32) -> UInt32 {
        (generation &+ 1) & 0xFF_FFFF
    }

    public var description: String { "UserData(kind: \(kind.rawValue), slot: \(slot), generation: \(generation))" }
}
