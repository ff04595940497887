import Synchronization

/// Allocation counts that span workers: `--user-quota` (per user) and
/// `--total-quota` (whole server). Over either, Allocate gets 486.
///
/// Touched only on the control path (Allocate and allocation removal), so a
/// mutex around a dictionary is fine; the total is an atomic so the common
/// "server full" refusal needs no lock. 0 means unlimited.
///
/// The two quotas can change while uturnd runs (a user database's realm
/// options, `setLimits`); allocations already made are kept, and a lower
/// quota refuses new ones until enough have ended.
public final class AllocationQuotas: Sendable {
    private let perUserLimit: Atomic<Int>
    private let totalLimit: Atomic<Int>
    private let totalCount = Atomic<Int>(0)
    private let userCounts = Mutex<[String: Int]>([:])
    /// Counts per user even without a per-user quota (`--user-max-bps` splits by them).
    private let countsUsers: Bool
    /// Allocations that carried traffic in the last second, server-wide: each
    /// worker adds the change in its own count once a second
    /// (`publishActive`), never per packet (`--bps-capacity-policy share`).
    private let activeCount = Atomic<Int>(0)

    /// `countUsers`: keep per-user counts even while `perUser` is 0 (for
    /// `--user-max-bps`, or a per-user quota that may be set later).
    public init(perUser: Int = 0, total: Int = 0, countUsers: Bool = false) {
        perUserLimit = Atomic(perUser)
        totalLimit = Atomic(total)
        self.countsUsers = countUsers || perUser > 0
    }

    /// Allocations one user may hold (0: unlimited).
    public var perUser: Int { perUserLimit.load(ordering: .relaxed) }
    /// Allocations the server may hold (0: unlimited).
    public var total: Int { totalLimit.load(ordering: .relaxed) }

    /// New quotas, for the next Allocate. A per-user quota is enforced only
    /// if users are counted (`countUsers` at init, or a per-user quota then).
    public func setLimits(perUser: Int, total: Int) {
        perUserLimit.store(perUser, ordering: .relaxed)
        totalLimit.store(total, ordering: .relaxed)
    }

    /// The total quota in force for `quota` (0: none) under `limits`: with
    /// `--bps-capacity-policy refuse` each allocation reserves `--max-bps`,
    /// so at most capacity / max-bps allocations fit.
    public static func total(quota: Int, limits: RateLimits) -> Int {
        guard let reserved = limits.reservedAllocations else { return quota }
        return quota == 0 ? reserved : min(quota, reserved)
    }

    /// Adds a worker's change in active allocations; returns the server-wide count.
    public func publishActive(delta: Int) -> Int {
        max(0, activeCount.wrappingAdd(delta, ordering: .relaxed).newValue)
    }

    /// Takes one allocation for `user`; false (and nothing taken) when a quota is full.
    public func acquire(user: String) -> Bool {
        let after = totalCount.wrappingAdd(1, ordering: .relaxed).newValue
        let total = self.total
        if total > 0 && after > total {
            totalCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        guard countsUsers else { return true }
        let perUser = self.perUser
        let ok = userCounts.withLock { counts -> Bool in
            let n = counts[user, default: 0]
            guard perUser == 0 || n < perUser else { return false }
            counts[user] = n + 1
            return true
        }
        if !ok { totalCount.wrappingSubtract(1, ordering: .relaxed) }
        return ok
    }

    /// Gives back one allocation taken by `acquire(user:)`.
    public func release(user: String) {
        totalCount.wrappingSubtract(1, ordering: .relaxed)
        guard countsUsers else { return }
        userCounts.withLock { counts in
            if let n = counts[user] { counts[user] = n > 1 ? n - 1 : nil }
        }
    }

    /// Allocations currently held server-wide.
    public var allocationCount: Int { totalCount.load(ordering: .relaxed) }

    public func allocationCount(user: String) -> Int { userCounts.withLock { $0[user, default: 0] } }
}
