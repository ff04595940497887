import TURN

/// The realm options of a user database (coturn's turn_realm_option table,
/// or its Redis keys `turn/realm/<realm>/<option>`, written by
/// `uturnadmin -g` or `turnadmin -g`) that uturnd applies to its realm. Each
/// one set in the database replaces the option of the same name from the
/// command line or config file; nil: not set there, the configured value
/// holds. 0 means unlimited, as for the flags.
///
/// - `max-bps`: as `--max-bps`, taken at start like the flag (the workers'
///   tables hold the traffic limits); a later change is logged with a
///   reminder to restart.
/// - `user-quota`, `total-quota`: as `--user-quota` and `--total-quota`,
///   followed while uturnd runs (CredentialSync): the next Allocate meets
///   the new quota, allocations already made are kept.
public struct RealmOptions: Sendable, Equatable {
    public var maxBps: UInt64?
    public var userQuota: Int?
    public var totalQuota: Int?

    public init(maxBps: UInt64? = nil, userQuota: Int? = nil, totalQuota: Int? = nil) {
        self.maxBps = maxBps
        self.userQuota = userQuota
        self.totalQuota = totalQuota
    }

    /// The options in `raw` (name → value as stored), each checked; a value
    /// that is not a whole number from 0 up to its flag's limit, or an
    /// option uturnd does not know, is skipped with a problem in words.
    public static func parse(_ raw: [String: String]) -> (RealmOptions, [String]) {
        var options = RealmOptions()
        var problems: [String] = []
        for (name, text) in raw.sorted(by: { $0.key < $1.key }) {
            let value = text.trimmingSpaces()
            guard let n = Int(value), n >= 0 else {
                problems.append("realm option \(name) '\(text)' is not a whole number of 0 or more; skipped")
                continue
            }
            switch name {
            case "max-bps":
                guard UInt64(n) <= RateLimits.maxRate else {
                    problems.append("realm option max-bps \(n) is over \(RateLimits.maxRate); skipped")
                    continue
                }
                options.maxBps = UInt64(n)
            case "user-quota": options.userQuota = n
            case "total-quota": options.totalQuota = n
            default: problems.append("realm option \(name) is not one uturnd applies; skipped")
            }
        }
        return (options, problems)
    }

    /// `base` with `max-bps` applied, unless it contradicts the capacity:
    /// under `--bps-capacity-policy refuse` a `max-bps` over `--bps-capacity`
    /// would refuse every allocation (the flag is refused at start for that).
    public func apply(to base: RateLimits) -> (RateLimits, String?) {
        guard let bps = maxBps else { return (base, nil) }
        if base.capacityPolicy == .refuse && base.capacityBytesPerSecond != 0 && bps > base.capacityBytesPerSecond {
            return (
                base,
                "realm option max-bps \(bps) is more than --bps-capacity \(base.capacityBytesPerSecond) under --bps-capacity-policy refuse; skipped"
            )
        }
        var limits = base
        limits.maxBytesPerSecond = bps
        return (limits, nil)
    }

    /// The quotas in force: the database's where it sets them, else the
    /// configured ones; the total bounded by what `limits` reserve
    /// (`AllocationQuotas.total`).
    public func quotas(configuredPerUser: Int, configuredTotal: Int, limits: RateLimits) -> (perUser: Int, total: Int) {
        (userQuota ?? configuredPerUser, AllocationQuotas.total(quota: totalQuota ?? configuredTotal, limits: limits))
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
