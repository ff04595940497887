/// What `--bps-capacity` does once the server is at capacity.
public enum CapacityPolicy: String, Sendable, Hashable, CaseIterable {
    /// Each allocation reserves `--max-bps` of the capacity; an Allocate that
    /// would overbook it gets 486 (coturn's behaviour). Without `--max-bps`
    /// nothing can be reserved, and the capacity is shared as with `share`.
    case refuse
    /// Every allocation is admitted; the capacity is split evenly between the
    /// allocations that carried traffic in the last second.
    case share
}

/// Per-allocation and server-wide traffic limits (issue #15). 0 means none.
///
/// Byte rates apply to each direction apart (client → peer and peer →
/// client each get the rate, as coturn's `max-bps` does), over every client
/// transport and RFC 6062 TCP relays. They are enforced by token buckets in
/// each allocation's record, owned by its worker: datagrams over them are
/// dropped (`admit`); byte streams are charged whole and paused instead
/// (`charge`, `resumeDelay`). The rate of each allocation is the least of
/// `maxBytesPerSecond`, its user's share of `userMaxBytesPerSecond` and its
/// share of `capacityBytesPerSecond`, recomputed once a second.
public struct RateLimits: Sendable, Hashable {
    /// `--max-bps`: bytes per second per allocation, each direction.
    public var maxBytesPerSecond: UInt64 = 0
    /// `--user-max-bps`: bytes per second per user (each direction), split
    /// evenly between that user's allocations.
    public var userMaxBytesPerSecond: UInt64 = 0
    /// `--bps-capacity`: bytes per second for the whole server (each direction).
    public var capacityBytesPerSecond: UInt64 = 0
    /// `--bps-capacity-policy`.
    public var capacityPolicy = CapacityPolicy.refuse
    /// `--max-pps`: packets per second per allocation, both directions together.
    public var maxPacketsPerSecond: UInt64 = 0
    /// `--max-new-peers-per-second`: new peer addresses (permissions) an
    /// allocation may add per second; more get 508.
    public var maxNewPeersPerSecond: UInt64 = 0

    /// Highest rate accepted (keeps the buckets' arithmetic in range).
    public static let maxRate: UInt64 = 16_000_000_000

    public init() {}

    /// Whether any per-packet limit (bytes or packets) is set. While one is,
    /// traffic must pass through user space: allocations are not offloaded.
    public var limitsPackets: Bool {
        maxBytesPerSecond != 0 || userMaxBytesPerSecond != 0 || capacityBytesPerSecond != 0 || maxPacketsPerSecond != 0
    }

    /// Whether any byte rate is set (byte streams may be paused).
    public var limitsBytes: Bool {
        maxBytesPerSecond != 0 || userMaxBytesPerSecond != 0 || capacityBytesPerSecond != 0
    }

    /// Whether `other` can replace these limits while uturnd runs: the same
    /// limits on (any per-packet limit, any byte limit), only their values
    /// changed. Turning one on or off needs a restart: it decides whether
    /// allocations may be offloaded and how byte streams are read.
    public func canReload(to other: RateLimits) -> Bool {
        limitsPackets == other.limitsPackets && limitsBytes == other.limitsBytes
    }

    /// Allocations the capacity can hold under `refuse` (each reserving
    /// `--max-bps`); nil when there is no such bound.
    public var reservedAllocations: Int? {
        guard capacityPolicy == .refuse, capacityBytesPerSecond != 0, maxBytesPerSecond != 0 else { return nil }
        return Int(clamping: capacityBytesPerSecond / maxBytesPerSecond)
    }

    /// One allocation's byte rate and what set it: the least of the limits
    /// that apply (0 and `.none` when none does).
    ///   - userAllocations: allocations its user holds (server-wide).
    ///   - capacityShare: its share of the capacity (0: no capacity limit).
    public func rate(userAllocations: Int, capacityShare: UInt64) -> (UInt64, RateCause) {
        var rate: UInt64 = 0
        var cause = RateCause.none
        func consider(_ r: UInt64, _ c: RateCause) {
            guard r != 0, rate == 0 || r < rate else { return }
            rate = r
            cause = c
        }
        consider(maxBytesPerSecond, .allocation)
        if userMaxBytesPerSecond != 0 {
            consider(max(1, userMaxBytesPerSecond / UInt64(max(1, userAllocations))), .user)
        }
        consider(capacityShare, .capacity)
        return (min(rate, Self.maxRate), cause)
    }

    /// Each allocation's share of the capacity when `active` allocations
    /// (server-wide) carry traffic: an allocation not yet counted is given
    /// what it would get if it were (`active + 1`), so it cannot overshoot
    /// before the next recount. 0 when there is no capacity limit.
    public func capacityShare(active: Int, countedActive: Bool) -> UInt64 {
        guard capacityBytesPerSecond != 0 else { return 0 }
        let n = max(1, countedActive ? active : active + 1)
        return max(1, capacityBytesPerSecond / UInt64(n))
    }
}

/// Which limit set an allocation's byte rate: the reason a drop is counted under.
public enum RateCause: UInt8, Sendable, Hashable {
    case none
    /// `--max-bps`.
    case allocation
    /// `--user-max-bps`.
    case user
    /// `--bps-capacity`.
    case capacity
}

/// Whether a packet may pass, and if not which limit stopped it.
public enum Admission: UInt8, Sendable, Hashable {
    case pass
    /// Over the allocation's byte rate (`--max-bps`).
    case bps
    /// Over its user's byte rate (`--user-max-bps`).
    case userBps
    /// Over its share of the server's capacity (`--bps-capacity`).
    case capacity
    /// Over `--max-pps`.
    case pps
}

/// Per-allocation drop counts, for the allocation's log line.
public struct PolicyDrops: Hashable, Sendable {
    public var bps: UInt64 = 0
    public var userBps: UInt64 = 0
    public var capacity: UInt64 = 0
    public var pps: UInt64 = 0
    /// New peers refused (508) by `--max-new-peers-per-second`.
    public var peers: UInt64 = 0
    public init() {}

    public var total: UInt64 { bps &+ userBps &+ capacity &+ pps &+ peers }

    mutating func count(_ a: Admission) {
        switch a {
        case .pass: break
        case .bps: bps &+= 1
        case .userBps: userBps &+= 1
        case .capacity: capacity &+= 1
        case .pps: pps &+= 1
        }
    }
}

/// One allocation's limiter state, in its record (plain memory, no references).
struct LimiterState {
    var toPeer = TokenBucket(burst: 0, now: 0)
    var toClient = TokenBucket(burst: 0, now: 0)
    var packets = TokenBucket(burst: 0, now: 0)
    var peers = TokenBucket(burst: 0, now: 0)
    /// Bytes per second, each direction (0: unlimited), and what set it.
    var rate: UInt64 = 0
    var cause = RateCause.none
    /// Traffic was offered since the last recount (for the capacity share).
    var active = false
    var drops = PolicyDrops()

    static let byteBurstFloor: UInt64 = 4096

    init() {}

    init(limits: RateLimits, rate: UInt64, cause: RateCause, now: UInt64) {
        self.rate = rate
        self.cause = cause
        let burst = TokenBucket.burst(rate: rate, floor: Self.byteBurstFloor)
        toPeer = TokenBucket(burst: burst, now: now)
        toClient = TokenBucket(burst: burst, now: now)
        packets = TokenBucket(burst: TokenBucket.burst(rate: limits.maxPacketsPerSecond, floor: 1), now: now)
        // New peers come in bursts (ICE adds several at once): a second's worth.
        peers = TokenBucket(burst: max(limits.maxNewPeersPerSecond, 1), now: now)
    }
}
