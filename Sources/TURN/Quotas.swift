import Synchronization

/// Allocation counts that span workers: `--user-quota` (per user) and
/// `--total-quota` (whole server). Over either, Allocate gets 486.
///
/// Touched only on the control path (Allocate and allocation removal), so a
/// mutex around a dictionary is fine; the total is an atomic so the common
/// "server full" refusal needs no lock. 0 means unlimited.
public final class AllocationQuotas: Sendable {
    public let perUser: Int
    public let total: Int
    private let totalCount = Atomic<Int>(0)
    private let userCounts = Mutex<[String: Int]>([:])
    /// Counts per user even without a per-user quota (`--user-max-bps` splits by them).
    private let countsUsers: Bool
    /// Allocations that carried traffic in the last second, server-wide: each
    /// worker adds the change in its own count once a second
    /// (`publishActive`), never per packet (`--bps-capacity-policy share`).
    private let activeCount = Atomic<Int>(0)

    public init(perUser: Int = 0, total: Int = 0, countUsers: Bool = false) {
        self.perUser = perUser
        self.total = total
        self.countsUsers = countUsers || perUser > 0
    }

    /// Adds a worker's change in active allocations; returns the server-wide count.
    public func publishActive(delta: Int) -> Int {
        max(0, activeCount.wrappingAdd(delta, ordering: .relaxed).newValue)
    }

    /// Takes one allocation for `user`; false (and nothing taken) when a quota is full.
    public func acquire(user: String) -> Bool {
        let after = totalCount.wrappingAdd(1, ordering: .relaxed).newValue
        if total > 0 && after > total {
            totalCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        guard countsUsers else { return true }
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
