/// A reading of the monotonic clock (CLOCK_MONOTONIC), passed in by the caller.
///
/// The TURN state machine never reads a clock itself: the engine reads the
/// clock once per completion batch and hands the reading to every call, and
/// tests advance it by hand. Expiry works in whole seconds (lifetimes are
/// given in seconds on the wire); the bandwidth limiter uses the nanoseconds.
public struct MonotonicTime: Comparable, Hashable, Sendable {
    public var nanoseconds: UInt64

    @inlinable
    public init(nanoseconds: UInt64) {
        self.nanoseconds = nanoseconds
    }

    @inlinable
    public static func seconds(_ s: UInt64) -> MonotonicTime {
        MonotonicTime(nanoseconds: s &* 1_000_000_000)
    }

    /// Whole seconds, as kept in the tables. UInt32 seconds of uptime last 136 years.
    @inlinable
    public var seconds: UInt32 { UInt32(truncatingIfNeeded: nanoseconds / 1_000_000_000) }

    @inlinable
    public static func < (a: MonotonicTime, b: MonotonicTime) -> Bool { a.nanoseconds < b.nanoseconds }

    @inlinable
    public func adding(seconds s: UInt64) -> MonotonicTime {
        MonotonicTime(nanoseconds: nanoseconds &+ s &* 1_000_000_000)
    }
}
