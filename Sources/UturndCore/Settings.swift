import ArgumentParser
import Glibc
import Relay
import STUN
import TURN
import UserStores

/// Where log lines go.
public enum LogDestination: Sendable, Equatable {
    case standardError
    case standardOutput
    case file(String)
}

/// Everything the daemon starts with, built from the parsed options and
/// checked as a whole. Building it is the one place option values are
/// interpreted, so `validate()`, `--check-config` and start-up agree.
public struct Settings: Sendable {
    public var engine: EngineConfig
    public var turn: TURNConfiguration
    /// `--user-quota` / `--total-quota` (0: unlimited).
    public var userQuota: Int
    public var totalQuota: Int
    public var logLevel: LogLevel
    public var logDestination: LogDestination
    public var drainSeconds: Int
    /// `--metrics-listen`: where the Prometheus endpoint listens (nil: off).
    public var metricsListen: TransportAddress? = nil
    /// `--admin-listen`: where the admin API listens (nil: off), and the
    /// token read from `--admin-token-file`.
    public var adminListen: TransportAddress? = nil
    public var adminToken: AdminToken? = nil
    /// `--admin-cert` / `--admin-pkey`: HTTPS for the admin API (nil: HTTP).
    public var adminTLS: TLSServerContext? = nil
    /// `--server-name` (coturn's oAuth server name; shown, no effect).
    public var serverName: String? = nil
    /// Static user names, sorted (for the summary; passwords are never logged).
    public var userNames: [String]
    /// Notes to log at start: risky or ignored settings, chosen defaults.
    public var warnings: [String] = []
    public var notices: [String] = []

    /// The demo credential `scripts/run` uses; start-up prints a "try it" line for it.
    public static let demoUser = ("demo", "demo-password")
    public var hasDemoUser: Bool
    /// `--userdb` / `--psql-userdb` / `--redis-userdb`: where the credential
    /// thread reads users, REST secrets and peer ranges (fixed at start).
    public var userDatabase: StoreLocation? = nil

    /// Fresh allocation counters for these quotas, shared by all workers.
    /// Under `--bps-capacity-policy refuse` each allocation reserves
    /// `--max-bps`, so the capacity bounds the total like `--total-quota`.
    /// `limits`: the traffic limits the workers start with (a user
    /// database's realm may set `max-bps`); these settings' by default.
    public func makeQuotas(limits: RateLimits? = nil) -> AllocationQuotas {
        let limits = limits ?? turn.rateLimits
        // A reload or a user database's realm options may set a per-user
        // quota later (CredentialSync): users are always counted (a lock
        // per Allocate and per allocation's end, never per packet).
        return AllocationQuotas(
            perUser: userQuota, total: AllocationQuotas.total(quota: totalQuota, limits: limits), countUsers: true)
    }
}

extension Settings {
    /// Builds and checks the settings; the error names the flag and what to do.
    /// `onlineCPUs` is the default worker count. A fresh random nonce secret
    /// is made each time (one per process in practice; workers share it).
    public init(_ o: Uturnd, onlineCPUs: Int = Settings.onlineCPUs()) throws(ValidationError) {
        // One group at a time, in this order: the first problem found is the
        // one reported, and later groups build on earlier ones (the relay
        // addresses and ports, the credentials, the listening port).
        var warnings: [String] = []
        var notices: [String] = []
        var engine = EngineConfig()

        let addresses = try Settings.listening(o.listening, engine: &engine, notices: &notices)
        let credentials = try Settings.credentials(o.auth, warnings: &warnings)
        let policy = try Settings.peerPolicy(
            o.peers, serverAddresses: addresses.serverAddresses, relayPorts: engine.minPort...engine.maxPort,
            warnings: &warnings)
        var turn = try Settings.turnConfiguration(
            o.limits, credentials: credentials.store, peerPolicy: policy, relays: addresses.relays)
        try Settings.streams(o.streams, addresses: addresses, engine: &engine, turn: &turn, notices: &notices)
        try Settings.dtlsListeners(
            o.streams, noDTLS: o.compatibility.noDTLS, addresses: addresses, engine: &engine, notices: &notices)
        try Settings.service(o.service, engine: &engine, turn: &turn, warnings: &warnings, notices: &notices)
        try Settings.natDiscovery(o.listening, addresses: addresses, engine: &engine, turn: &turn, notices: &notices)
        let destination = try Settings.logging(o.logging)
        let metricsListen = try Settings.metricsEndpoint(o.logging)
        let (adminListen, adminToken, adminTLS) = try Settings.adminEndpoint(o.admin, warnings: &warnings)
        try Settings.engineTuning(o.engine, onlineCPUs: onlineCPUs, engine: &engine)
        try Settings.abuse(o.abuse, workers: engine.workers, turn: &turn)
        if let problem = engine.problem() { throw ValidationError(problem + ".") }
        if turn.rateLimits.limitsPackets && engine.offload != .off {
            // The kernel fast path would carry channel traffic past the
            // user-space token buckets; limits win, the fast path stays off.
            warnings.append(
                "--offload \(engine.offload.rawValue) is ignored: traffic limits (--max-bps, --bps-capacity, --user-max-bps, --max-pps) are enforced in user space, so no allocation is offloaded")
            engine.offload = .off
        }
        if turn.rateLimits.capacityPolicy == .refuse && turn.rateLimits.capacityBytesPerSecond != 0
            && turn.rateLimits.maxBytesPerSecond == 0
        {
            notices.append("--bps-capacity-policy refuse without --max-bps: nothing is reserved, so the capacity is shared between active allocations")
        }

        self.engine = engine
        self.turn = turn
        self.userQuota = o.limits.userQuota
        self.totalQuota = o.limits.totalQuota
        self.logLevel = o.logging.logLevel
        self.logDestination = destination
        self.drainSeconds = o.limits.drainTimeout
        self.metricsListen = metricsListen
        self.adminListen = adminListen
        self.adminToken = adminToken
        self.adminTLS = adminTLS
        self.serverName = o.service.serverName
        self.userNames = credentials.userNames
        self.hasDemoUser = credentials.hasDemoUser
        self.userDatabase = credentials.database
        self.warnings = warnings
        self.notices = notices
    }

    /// A port flag's value, which must be 1...65535.
    static func port(_ value: Int, flag: String) throws(ValidationError) -> UInt16 {
        guard (1...65535).contains(value) else { throw ValidationError("\(flag) \(value) must be 1...65535.") }
        return UInt16(value)
    }

    /// Online CPUs (at least 1): the default worker count.
    public static func onlineCPUs() -> Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// What `--check-config` prints and start-up logs, one line each.
    public var summary: [String] {
        var lines: [String] = []
        for a in engine.listen { lines.append("listening on udp \(a)") }
        let nat = turn.natDiscovery
        if nat.isEnabled {
            let pairs = zip(nat.first, nat.second).map { "\($0) and \($1)" }.joined(separator: "; ")
            lines.append("RFC 5780 NAT behaviour discovery: \(pairs), ports \(nat.primaryPort) and \(nat.alternatePort)")
        }
        for a in engine.tcpListen { lines.append("listening on tcp \(a)") }
        for a in engine.tlsListen { lines.append("listening on tls \(a) (certificate \(engine.tls?.certificateFile ?? "?"))") }
        for a in engine.dtlsListen {
            lines.append("listening on dtls \(a) (certificate \(engine.dtls?.certificateFile ?? "?"))")
        }
        let relays = (engine.relayIPsV4 + engine.relayIPsV6).map(\.description).joined(separator: " and ")
        var relay = "relaying from \(relays), ports \(engine.minPort)-\(engine.maxPort)"
        if let external = engine.externalIPv4 { relay += ", advertised as \(external)" }
        lines.append(relay)
        lines.append("workers: \(engine.workers)\(engine.pinWorkers ? " (pinned to CPUs)" : "")")
        var auth = "realm \"\(turn.credentials.realm)\""
        if !userNames.isEmpty {
            auth += ", \(userNames.count) static user\(userNames.count == 1 ? "" : "s") (\(userNames.joined(separator: ", ")))"
        }
        if let rest = turn.credentials.rest {
            auth += ", REST API credentials with \(rest.secrets.count) secret\(rest.secrets.count == 1 ? "" : "s")"
        }
        if let database = userDatabase { auth += ", users and secrets also from \(database)" }
        lines.append(auth)
        let p = turn.peerPolicy
        lines.append(
            "peers: loopback \(p.allowLoopbackPeers ? "ALLOWED" : "denied"), private ranges denied, \(p.allowed.count) allow and \(p.denied.count) deny blocks")
        lines.append(
            "lifetimes: allocations up to \(turn.maxLifetime) s, nonces \(turn.nonces.lifetime) s; quotas: \(userQuota == 0 ? "none" : "\(userQuota)") per user, \(totalQuota == 0 ? "none" : "\(totalQuota)") in total")
        lines.append(serviceSummary)
        lines.append(abuseSummary)
        if let alternateSummary { lines.append(alternateSummary) }
        if turn.nonces.fleet { lines.append("nonces: shared with a fleet (--nonce-secret-file), wall-clock times") }
        if let limits = rateLimitSummary { lines.append(limits) }
        if let metricsListen { lines.append("metrics: http://\(metricsListen)/metrics") }
        if let adminListen {
            let scheme = adminTLS == nil ? "http" : "https"
            let host = adminListen.ip.family == .v4 ? "\(adminListen.ip)" : "[\(adminListen.ip)]"
            var line = "admin API: \(scheme)://\(host):\(adminListen.port)/v1/ (bearer token)"
            if let tls = adminTLS { line += ", certificate \(tls.certificateFile)" }
            lines.append(line)
        }
        return lines
    }
}

extension Settings {
    /// The traffic limits in force, for the summary (nil when none).
    var rateLimitSummary: String? {
        let r = turn.rateLimits
        var parts: [String] = []
        if r.maxBytesPerSecond != 0 { parts.append("\(r.maxBytesPerSecond) B/s per allocation each way") }
        if r.userMaxBytesPerSecond != 0 { parts.append("\(r.userMaxBytesPerSecond) B/s per user each way") }
        if r.capacityBytesPerSecond != 0 {
            parts.append("\(r.capacityBytesPerSecond) B/s server capacity each way (\(r.capacityPolicy.rawValue))")
        }
        if r.maxPacketsPerSecond != 0 { parts.append("\(r.maxPacketsPerSecond) packets/s per allocation (both ways)") }
        if r.maxNewPeersPerSecond != 0 { parts.append("\(r.maxNewPeersPerSecond) new peers/s per allocation") }
        guard !parts.isEmpty else { return nil }
        return "traffic limits: " + parts.joined(separator: ", ")
    }
}

extension IPAddress {
    var isUnspecified: Bool { family == .v4 ? v4 == 0 : high == 0 && low == 0 }
    var isMulticast: Bool { family == .v4 ? v4 >> 28 == 0xE : high >> 56 == 0xFF }
}
