import ArgumentParser
import Relay
import STUN
import TURN
import UserStores

/// What SIGHUP does, as a pure decision: rebuild the settings from the
/// config file and the original command line, then either keep the running
/// settings (anything fails) or hand over a new TURN configuration.
///
/// Runtime-changeable: users and their passwords, realm, REST API secrets and
/// separator, peer policy (allow/deny blocks, loopback), allocation and nonce
/// lifetimes, strict channel numbers, --drain-timeout, --stun-only,
/// --no-stun, --secure-stun, --no-udp-relay, --no-software-attribute,
/// --check-origin-consistency, --mobility, --server-name, the request limits
/// (--failed-request-rate, --binding-request-rate and their kin),
/// --user-quota and --total-quota (for the next Allocate), the values of
/// the traffic limits (--max-bps and its kin, while the same ones stay on), the
/// alternate servers and their policy, and the TLS
/// certificate and key (read afresh when TLS listeners run). Everything
/// else is fixed when the engine starts (sockets, threads, rings, which
/// traffic limits are on, the log level and destination, the metrics endpoint); a
/// difference there is reported, not applied.
public struct Reloader: Sendable {
    /// The arguments after the program name, exactly as at start.
    public var commandLine: [String]
    /// The online CPU count the running settings were built with (the
    /// default --workers), so a CPU hot-plug does not read as a change.
    public var onlineCPUs: Int
    /// Reads the config file (tests pass their own).
    public var load: @Sendable (String) throws(ConfigFileError) -> ConfigFile

    public init(
        commandLine: [String], onlineCPUs: Int = Settings.onlineCPUs(),
        load: @escaping @Sendable (String) throws(ConfigFileError) -> ConfigFile = { path throws(ConfigFileError) in
            try ConfigFile.load(path: path)
        }
    ) {
        self.commandLine = commandLine
        self.onlineCPUs = onlineCPUs
        self.load = load
    }

    /// A reload that can be applied.
    public struct Outcome {
        /// The settings now in force: the running ones with the reloadable
        /// parts replaced (restart-only parts stay as they run).
        public var settings: Settings
        /// The options the new settings came from (for the next comparison).
        public var options: Uturnd
        /// One phrase per reloadable change ("static users 1 → 1 (+bob, -alice)").
        public var changes: [String]
        /// One warning per restart-only option that differs.
        public var restartNeeded: [String]
        /// Warnings from the file (ignored coturn options) and the settings.
        public var warnings: [String]
        /// The config file, if there is one.
        public var configPath: String?

        /// The notice line to log.
        public var summary: String {
            let source = configPath.map { "from \($0) and the command line" } ?? "from the command line (no -c file)"
            if changes.isEmpty { return "SIGHUP: configuration reloaded \(source): no changes" }
            return "SIGHUP: configuration reloaded \(source): \(changes.joined(separator: "; "))"
        }
    }

    public enum Result {
        case apply(Outcome)
        /// Keep the running settings; the message names the problem.
        case keep(String)
    }

    /// Rebuilds and compares. Never touches the engine.
    public func reload(current: Settings, currentOptions: Uturnd) -> Result {
        let options: Uturnd
        let fileWarnings: [String]
        let configPath: String?
        let fresh: Settings
        var launch: LaunchArguments?
        do {
            let assembled = try LaunchArguments.assemble(commandLine: commandLine, load: load)
            launch = assembled
            guard let parsed = try Uturnd.parseAsRoot(assembled.arguments) as? Uturnd else {
                return .keep("the command line no longer parses as uturnd options")
            }
            options = parsed
            fileWarnings = assembled.warnings
            configPath = assembled.configPath
        } catch let error as ConfigFileError {
            return .keep(error.description)
        } catch {
            let text = Uturnd.message(for: error)
            return .keep(launch?.located(text) ?? text)
        }
        do { fresh = try Settings(options, onlineCPUs: onlineCPUs) } catch {
            return .keep(launch?.located(error.message) ?? error.message)
        }

        var next = current
        var turn = fresh.turn
        // The nonce secret stays, so every nonce handed out so far remains
        // valid, unless a fleet secret (--nonce-secret-file) is given or
        // taken away: then the new one rules (clients get one 438).
        if !current.turn.nonces.fleet && !fresh.turn.nonces.fleet {
            var nonces = current.turn.nonces
            nonces.lifetime = fresh.turn.nonces.lifetime
            turn.nonces = nonces
        }
        // These were fixed at start: they follow the sockets the engine opened
        // (own addresses, relay families, TCP relaying) and the table sizes
        // its workers allocated.
        turn.peerPolicy.serverAddresses = current.turn.peerPolicy.serverAddresses
        turn.peerPolicy.relayPorts = current.turn.peerPolicy.relayPorts
        turn.relayFamilies = current.turn.relayFamilies
        turn.limits = current.turn.limits
        turn.tcpRelay = current.turn.tcpRelay
        // The refusal total is shared by the workers that run, not by a
        // --workers that waits for a restart.
        if fresh.engine.workers != current.engine.workers {
            try? Settings.abuse(options.abuse, workers: current.engine.workers, turn: &turn)
        }
        turn.natDiscovery = current.turn.natDiscovery
        // New values of the traffic limits apply while the same ones stay
        // on; turning one on or off waits for a restart (warned below).
        if !current.turn.rateLimits.canReload(to: fresh.turn.rateLimits) {
            turn.rateLimits = current.turn.rateLimits
        }
        next.turn = turn
        // A new certificate and key (same listeners): read afresh on every
        // SIGHUP, so a renewed certificate at the same path is picked up.
        if current.engine.tls != nil, let tls = fresh.engine.tls { next.engine.tls = tls }
        if current.engine.dtls != nil, let dtls = fresh.engine.dtls { next.engine.dtls = dtls }
        next.drainSeconds = fresh.drainSeconds
        // The quotas are atomics the workers read at each Allocate (the
        // daemon puts the new ones in force; allocations made are kept).
        next.userQuota = fresh.userQuota
        next.totalQuota = fresh.totalQuota
        // The admin token file is read afresh too (rotating the token needs no restart).
        next.adminToken = current.adminListen == nil ? nil : fresh.adminToken
        if current.adminTLS != nil, let tls = fresh.adminTLS { next.adminTLS = tls }
        next.serverName = fresh.serverName
        next.userNames = fresh.userNames
        next.hasDemoUser = fresh.hasDemoUser
        next.warnings = fresh.warnings
        next.notices = fresh.notices

        return .apply(
            Outcome(
                settings: next, options: options,
                changes: Reloader.changes(from: current, currentOptions, to: next, options),
                restartNeeded: Reloader.restartOnly(running: current, file: fresh),
                warnings: fileWarnings + fresh.warnings, configPath: configPath))
    }

    /// The reloadable differences, in words (passwords never appear).
    static func changes(from old: Settings, _ oldOptions: Uturnd, to new: Settings, _ newOptions: Uturnd) -> [String] {
        var out: [String] = []
        if old.turn.credentials.realm != new.turn.credentials.realm {
            out.append("realm \"\(old.turn.credentials.realm)\" → \"\(new.turn.credentials.realm)\"")
        }
        let before = Reloader.userEntries(oldOptions)
        let after = Reloader.userEntries(newOptions)
        let added = after.keys.filter { before[$0] == nil }.sorted()
        let removed = before.keys.filter { after[$0] == nil }.sorted()
        let changed = after.keys.filter { before[$0] != nil && before[$0] != after[$0] }.sorted()
        if !added.isEmpty || !removed.isEmpty || !changed.isEmpty {
            var detail = added.map { "+\($0)" } + removed.map { "-\($0)" }
            if !changed.isEmpty { detail.append("new password for \(changed.joined(separator: ", "))") }
            out.append("static users \(before.count) → \(after.count) (\(detail.joined(separator: ", ")))")
        }
        let oldSecrets = old.turn.credentials.rest?.secrets ?? []
        let newSecrets = new.turn.credentials.rest?.secrets ?? []
        if oldSecrets != newSecrets {
            let kept = newSecrets.filter { oldSecrets.contains($0) }.count
            out.append("REST API secrets \(oldSecrets.count) → \(newSecrets.count) (\(kept) kept)")
        } else if old.turn.credentials.rest?.separator != new.turn.credentials.rest?.separator {
            out.append("REST API separator changed")
        }
        let p0 = old.turn.peerPolicy, p1 = new.turn.peerPolicy
        if p0.allowed != p1.allowed || p0.denied != p1.denied {
            out.append(
                "peer policy \(p0.allowed.count) allow / \(p0.denied.count) deny blocks → \(p1.allowed.count) allow / \(p1.denied.count) deny")
        }
        if p0.allowLoopbackPeers != p1.allowLoopbackPeers {
            out.append("loopback peers \(p1.allowLoopbackPeers ? "ALLOWED" : "denied")")
        }
        if old.turn.maxLifetime != new.turn.maxLifetime {
            out.append("--max-allocate-lifetime \(old.turn.maxLifetime) → \(new.turn.maxLifetime) s")
        }
        if old.turn.nonces.lifetime != new.turn.nonces.lifetime {
            out.append("--stale-nonce \(old.turn.nonces.lifetime) → \(new.turn.nonces.lifetime) s")
        }
        if old.turn.nonces.fleet || new.turn.nonces.fleet {
            out.append(new.turn.nonces.fleet ? "--nonce-secret-file read: nonces shared with the fleet" : "nonces no longer shared with a fleet")
        }
        if old.turn.strictChannelNumbers != new.turn.strictChannelNumbers {
            out.append("--strict-channel-numbers \(new.turn.strictChannelNumbers ? "on" : "off")")
        }
        let t0 = old.turn, t1 = new.turn
        if t0.stunOnly != t1.stunOnly { out.append("--stun-only \(t1.stunOnly ? "on" : "off")") }
        if t0.answersBinding != t1.answersBinding { out.append("--no-stun \(t1.answersBinding ? "off" : "on")") }
        if t0.authenticatesBinding != t1.authenticatesBinding {
            out.append("--secure-stun \(t1.authenticatesBinding ? "on" : "off")")
        }
        if t0.udpRelay != t1.udpRelay { out.append("--no-udp-relay \(t1.udpRelay ? "off" : "on")") }
        if t0.software != t1.software { out.append("--no-software-attribute \(t1.software == nil ? "on" : "off")") }
        if t0.checkOriginConsistency != t1.checkOriginConsistency {
            out.append("--check-origin-consistency \(t1.checkOriginConsistency ? "on" : "off")")
        }
        if t0.mobility != t1.mobility { out.append("--mobility \(t1.mobility ? "on" : "off")") }
        if old.serverName != new.serverName { out.append("--server-name \(new.serverName ?? "none")") }
        if let a = old.engine.tls, let b = new.engine.tls, a !== b {
            out.append("TLS certificate reloaded from \(b.certificateFile)")
        }
        if let a = old.adminToken, let b = new.adminToken, !a.matches(b.value) {
            out.append("admin API token replaced")
        }
        if let a = old.adminTLS, let b = new.adminTLS, a !== b {
            out.append("admin API certificate reloaded from \(b.certificateFile)")
        }
        if t0.sourceLimits != t1.sourceLimits { out.append(new.abuseSummary) }
        out += trafficLimitChanges(from: t0.rateLimits, to: t1.rateLimits)
        if old.userQuota != new.userQuota { out.append("--user-quota \(old.userQuota) → \(new.userQuota)") }
        if old.totalQuota != new.totalQuota { out.append("--total-quota \(old.totalQuota) → \(new.totalQuota)") }
        if t0.alternates != t1.alternates { out.append(new.alternateSummary ?? "no alternate servers") }
        if let a = old.engine.dtls, let b = new.engine.dtls, a !== b {
            out.append("DTLS certificate reloaded from \(b.certificateFile)")
        }
        if old.drainSeconds != new.drainSeconds {
            out.append("--drain-timeout \(old.drainSeconds) → \(new.drainSeconds) s")
        }
        return out
    }

    /// name → the rest of its --user entry (compared, never shown).
    static func userEntries(_ o: Uturnd) -> [String: String] {
        var table: [String: String] = [:]
        for entry in o.auth.users {
            guard let colon = entry.firstIndex(of: ":") else { continue }
            table[String(entry[..<colon])] = String(entry[entry.index(after: colon)...])
        }
        return table
    }

    /// Options fixed at start, each with how to show its value. A new
    /// restart-only option adds one line here.
    static let restartOnlyOptions: [(flag: String, value: @Sendable (Settings) -> String)] = [
        ("--listening-ip", { $0.engine.listen.map { "\($0.ip)" }.joined(separator: ", ") }),
        ("--listening-port", { "\(($0.engine.listen + $0.engine.tcpListen).first?.port ?? 0)" }),
        ("--relay-ip", { ($0.engine.relayIPsV4 + $0.engine.relayIPsV6).map(\.description).joined(separator: ", ") }),
        ("--external-ip", { $0.engine.externalIPv4?.description ?? "none" }),
        ("--min-port", { "\($0.engine.minPort)" }),
        ("--max-port", { "\($0.engine.maxPort)" }),
        ("--workers", { "\($0.engine.workers)" }),
        ("--pin-workers", { "\($0.engine.pinWorkers)" }),
        ("--sq-entries", { "\($0.engine.sqEntries)" }),
        ("--cq-entries", { "\($0.engine.cqEntries)" }),
        ("--buffers", { "\($0.engine.buffers)" }),
        ("--buffer-size", { "\($0.engine.bufferSize)" }),
        ("--send-ops", { "\($0.engine.sendOperations)" }),
        ("--max-batch", { "\($0.engine.maxBatch)" }),
        ("--batch-wait-us", { "\($0.engine.batchWaitMicroseconds)" }),
        ("--no-multishot", { "\($0.engine.singleShotReceive)" }),
        ("--no-defer-taskrun", { "\($0.engine.noDeferTaskrun)" }),
        ("--no-single-issuer", { "\($0.engine.noSingleIssuer)" }),
        ("--no-gso", { "\(!$0.engine.gso)" }),
        ("--gro-client", { "\($0.engine.groClient)" }),
        ("--gro-peer", { "\($0.engine.groPeer)" }),
        ("--gro-buffers", { "\($0.engine.groBuffers)" }),
        ("--backend", { $0.engine.backend.rawValue }),
        ("--offload", { $0.engine.offload.rawValue }),
        ("--offload-interface", { $0.engine.offloadInterfaces.joined(separator: ", ") }),
        ("--kernel-source-filter", { $0.engine.kernelSourceFilter.rawValue }),
        ("--no-tcp", { "\($0.engine.tcpListen.isEmpty)" }),
        ("--no-tcp-relay", { "\(!$0.turn.tcpRelay)" }),
        ("--no-udp", { "\($0.engine.listen.isEmpty)" }),
        ("--no-rfc5780/--alt-listening-port", {
            $0.turn.natDiscovery.isEnabled ? "port \($0.turn.natDiscovery.alternatePort)" : "off"
        }),
        ("--permission-lifetime", { "\($0.turn.limits.permissionLifetime)" }),
        ("--channel-lifetime", { "\($0.turn.limits.channelLifetime)" }),
        ("TLS listeners", { $0.engine.tlsListen.map(\.description).joined(separator: ", ") }),
        ("DTLS listeners", { $0.engine.dtlsListen.map(\.description).joined(separator: ", ") }),
        ("--tcp-connections", { "\($0.engine.streamConnections)" }),
        ("--tcp-connections-per-ip", { "\($0.engine.streamConnectionsPerIP)" }),
        ("--tcp-send-queue", { "\($0.engine.streamSendQueue)" }),
        ("--tcp-idle-timeout", { "\($0.engine.streamIdleSeconds)" }),
        ("--tls-handshake-timeout", { "\($0.engine.tlsHandshakeSeconds)" }),
        ("--tcp-stall-timeout", { "\($0.engine.streamStallSeconds)" }),
        ("--metrics-listen", { $0.metricsListen?.description ?? "off" }),
        ("--admin-listen", { $0.adminListen?.description ?? "off" }),
        ("admin API over HTTPS", { $0.adminTLS == nil ? "no" : "yes" }),
        ("the user database", { $0.userDatabase?.description ?? "none" }),
        ("--log-level", { $0.logLevel.rawValue }),
        ("--log-file", {
            switch $0.logDestination {
            case .standardError: "stderr"
            case .standardOutput: "stdout"
            case .file(let path): path
            }
        }),
    ]

    /// The traffic limits: reloadable while the same ones stay on
    /// (`RateLimits.canReload`), else restart-only.
    static let trafficLimitOptions: [(flag: String, value: @Sendable (RateLimits) -> String)] = [
        ("--max-bps", { "\($0.maxBytesPerSecond)" }),
        ("--bps-capacity", { "\($0.capacityBytesPerSecond)" }),
        ("--bps-capacity-policy", { $0.capacityPolicy.rawValue }),
        ("--user-max-bps", { "\($0.userMaxBytesPerSecond)" }),
        ("--max-pps", { "\($0.maxPacketsPerSecond)" }),
        ("--max-new-peers-per-second", { "\($0.maxNewPeersPerSecond)" }),
    ]

    /// "--max-bps 1000 → 2000" for each traffic limit that differs.
    static func trafficLimitChanges(from a: RateLimits, to b: RateLimits) -> [String] {
        trafficLimitOptions.compactMap { o in o.value(a) == o.value(b) ? nil : "\(o.flag) \(o.value(a)) → \(o.value(b))" }
    }

    /// One warning per restart-only option whose value differs (the traffic
    /// limits only when the change would turn one on or off).
    static func restartOnly(running: Settings, file: Settings) -> [String] {
        var out = restartOnlyOptions.compactMap { option in
            let a = option.value(running), b = option.value(file)
            return a == b ? nil : "\(option.flag) changed in the config file: restart to apply (running \(a), now \(b))"
        }
        let a = running.turn.rateLimits, b = file.turn.rateLimits
        if !a.canReload(to: b) {
            for o in trafficLimitOptions where o.value(a) != o.value(b) {
                out.append(
                    "\(o.flag) changed in the config file: restart to apply (running \(o.value(a)), now \(o.value(b)); turning a traffic limit on or off needs a restart)"
                )
            }
        }
        return out
    }
}
