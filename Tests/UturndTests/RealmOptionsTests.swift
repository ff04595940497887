import Glibc
import TURN
import Testing
import UserStores
import UturndCore

/// A user database's realm options (turn_realm_option): parsed, checked and
/// composed over the configured settings.
@Suite("Realm options from a user database")
struct RealmOptionsTests {
    @Test func theThreeOptionsParseAndBadOnesAreSkippedWithAReason() {
        let (o, problems) = RealmOptions.parse(["max-bps": "64000", "user-quota": " 2 ", "total-quota": "0"])
        #expect(o == RealmOptions(maxBps: 64000, userQuota: 2, totalQuota: 0))
        #expect(problems.isEmpty)
        let (bad, why) = RealmOptions.parse([
            "max-bps": "-1", "user-quota": "many", "total-quota": "99999999999999999999999", "colour": "5",
        ])
        #expect(bad == RealmOptions())
        #expect(why.count == 4)
        #expect(why.contains { $0.contains("colour") && $0.contains("not one uturnd applies") })
        #expect(why.contains { $0.contains("user-quota 'many'") })
        let (over, overWhy) = RealmOptions.parse(["max-bps": String(RateLimits.maxRate + 1)])
        #expect(over.maxBps == nil && overWhy.count == 1)
    }

    @Test func maxBpsReplacesTheFlagUnlessTheCapacityRefusesIt() {
        var limits = RateLimits()
        limits.maxBytesPerSecond = 1000
        let (set, none) = RealmOptions(maxBps: 500).apply(to: limits)
        #expect(set.maxBytesPerSecond == 500 && none == nil)
        #expect(RealmOptions().apply(to: limits).0 == limits)
        limits.capacityBytesPerSecond = 4000  // refuse by default
        let (kept, conflict) = RealmOptions(maxBps: 5000).apply(to: limits)
        #expect(kept.maxBytesPerSecond == 1000)
        #expect(conflict?.contains("--bps-capacity 4000") == true)
        limits.capacityPolicy = .share
        #expect(RealmOptions(maxBps: 5000).apply(to: limits).0.maxBytesPerSecond == 5000)
    }

    @Test func quotasAreTheDatabasesWhereItSetsThemAndTheCapacityStillBounds() {
        var limits = RateLimits()
        let none = RealmOptions().quotas(configuredPerUser: 3, configuredTotal: 50, limits: limits)
        #expect(none.perUser == 3 && none.total == 50)
        let set = RealmOptions(userQuota: 1, totalQuota: 0).quotas(configuredPerUser: 3, configuredTotal: 50, limits: limits)
        #expect(set.perUser == 1 && set.total == 0)
        limits.maxBytesPerSecond = 100
        limits.capacityBytesPerSecond = 1000
        let bounded = RealmOptions(totalQuota: 0).quotas(configuredPerUser: 0, configuredTotal: 0, limits: limits)
        #expect(bounded.total == 10)
    }

    @Test func composeAppliesMaxBpsAndAChangeOfOptionsComposesAfresh() throws {
        let base = try settings(["--realm", "r", "--user", "alice:pw", "--max-bps", "1000"]).turn
        var snap = StoreSnapshot()
        snap.realmOptions = ["max-bps": "250", "user-quota": "1"]
        let (turn, problems) = CredentialSync.compose(base, snap)
        #expect(problems.isEmpty)
        #expect(turn.rateLimits.maxBytesPerSecond == 250)
        // Without the option the flag's value is back.
        #expect(CredentialSync.compose(base, StoreSnapshot()).0.rateLimits.maxBytesPerSecond == 1000)
        // Only users changed: an update; options changed: nil (compose afresh).
        var users = snap
        users.users["bob"] = .password("x")
        #expect(CredentialSync.update(turn, base: base, from: snap, to: users) != nil)
        var options = snap
        options.realmOptions["user-quota"] = "2"
        #expect(CredentialSync.update(turn, base: base, from: snap, to: options) == nil)
        // A bad value is reported, not applied.
        var bad = StoreSnapshot()
        bad.realmOptions = ["max-bps": "fast"]
        let (kept, why) = CredentialSync.compose(base, bad)
        #expect(kept.rateLimits.maxBytesPerSecond == 1000)
        #expect(why.count == 1)
    }

    @Test func aReloadsQuotasApplyWhereTheDatabaseSetsNone() throws {
        var template = Array("/tmp/uturn-realm-quotas-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        close(fd)
        let path = String(cString: template)
        defer { unlink(path) }
        let store = try SQLiteStore(path: path)
        try store.setRealmOption(RealmOption(realm: "r", name: "total-quota", value: "7"))
        let base = try settings(["--realm", "r", "--user", "alice:pw", "--user-quota", "2", "--total-quota", "50"]).turn
        let sync = CredentialSync(
            location: .sqlite(path: path), base: base, configuredQuotas: (2, 50),
            logger: Logger(level: .error, fd: -1))
        _ = sync.initialConfiguration()
        let quotas = AllocationQuotas(perUser: 2, total: 50, countUsers: true)
        sync.useQuotas(quotas, limits: base.rateLimits)
        #expect(quotas.perUser == 2 && quotas.total == 7)  // the database's total wins
        // A SIGHUP with new flags: the per-user quota follows them, the total stays the database's.
        sync.setBase(base, configuredQuotas: (1, 100))
        #expect(quotas.perUser == 1 && quotas.total == 7)
    }
}
