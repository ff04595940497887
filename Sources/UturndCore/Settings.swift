import ArgumentParser
import Glibc
import Relay
import STUN
import TURN

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
    /// Static user names, sorted (for the summary; passwords are never logged).
    public var userNames: [String]
    /// Notes to log at start: risky or ignored settings, chosen defaults.
    public var warnings: [String] = []
    public var notices: [String] = []

    /// The demo credential `scripts/run` uses; start-up prints a "try it" line for it.
    public static let demoUser = ("demo", "demo-password")
    public var hasDemoUser: Bool

    /// Fresh allocation counters for these quotas, shared by all workers.
    public func makeQuotas() -> AllocationQuotas { AllocationQuotas(perUser: userQuota, total: totalQuota) }
}

extension Settings {
    /// Builds and checks the settings; the error names the flag and what to do.
    /// `onlineCPUs` is the default worker count. A fresh random nonce secret
    /// is made each time (one per process in practice; workers share it).
    public init(_ o: Uturnd, onlineCPUs: Int = Settings.onlineCPUs()) throws(ValidationError) {
        var warnings: [String] = []
        var notices: [String] = []
        var engine = EngineConfig()

        // Listening.
        let port = try Settings.port(o.listening.listeningPort, flag: "--listening-port")
        var listenIPs: [IPAddress] = []
        for text in o.listening.listeningIPs.isEmpty ? ["127.0.0.1"] : o.listening.listeningIPs {
            guard let ip = IPAddress(text) else {
                throw ValidationError("--listening-ip '\(text)' is not an IPv4 or IPv6 address.")
            }
            if listenIPs.contains(ip) { throw ValidationError("--listening-ip \(ip) is given twice.") }
            listenIPs.append(ip)
        }
        engine.listen = listenIPs.map { TransportAddress(ip: $0, port: port) }

        // Relay addresses: one per family.
        var relays: [IPAddress] = []
        for text in o.listening.relayIPs {
            guard let ip = IPAddress(text) else {
                throw ValidationError("--relay-ip '\(text)' is not an IPv4 or IPv6 address.")
            }
            if ip.isUnspecified || ip.isMulticast {
                throw ValidationError("--relay-ip \(ip) cannot be a relay address; give the host's own unicast address.")
            }
            if let other = relays.first(where: { $0.family == ip.family }) {
                throw ValidationError(
                    "--relay-ip \(other) and \(ip) are both \(ip.family == .v4 ? "IPv4" : "IPv6"); uturn relays from one address per family.")
            }
            relays.append(ip)
        }
        if relays.isEmpty {
            for ip in listenIPs where !ip.isUnspecified && !relays.contains(where: { $0.family == ip.family }) {
                relays.append(ip)
            }
            if relays.isEmpty {
                throw ValidationError(
                    "--listening-ip \(listenIPs[0]) listens on every address, so the relay address cannot be taken from it; give --relay-ip with this host's public address.")
            }
            if listenIPs.count > relays.count {
                notices.append("relay address taken from the listening addresses: \(relays.map(\.description).joined(separator: ", ")) (set --relay-ip to choose)")
            }
        }
        engine.relayIPv4 = relays.first { $0.family == .v4 }
        engine.relayIPv6 = relays.first { $0.family == .v6 }

        // External (NAT) address: coturn's public[/private].
        var serverAddresses = listenIPs.filter { !$0.isUnspecified } + relays
        if let text = o.listening.externalIP {
            let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let external = IPAddress(parts[0]) else {
                throw ValidationError("--external-ip '\(text)': expected public or public/private IPv4 addresses.")
            }
            guard external.family == .v4 else {
                throw ValidationError("--external-ip \(external): only an IPv4 external address is supported.")
            }
            guard let relay4 = engine.relayIPv4 else {
                throw ValidationError("--external-ip needs an IPv4 relay address (--relay-ip).")
            }
            if parts.count == 2 {
                guard let local = IPAddress(parts[1]) else {
                    throw ValidationError("--external-ip '\(text)': '\(parts[1])' is not an IP address.")
                }
                if local != relay4 {
                    throw ValidationError(
                        "--external-ip \(text): the private address must be the IPv4 relay address (\(relay4)); uturn relays from one address per family.")
                }
            }
            engine.externalIPv4 = external
            serverAddresses.append(external)
        }

        // Relay ports.
        let minPort = try Settings.port(o.listening.minPort, flag: "--min-port")
        let maxPort = try Settings.port(o.listening.maxPort, flag: "--max-port")
        if minPort > maxPort {
            throw ValidationError("--min-port \(minPort) is above --max-port \(maxPort).")
        }
        engine.minPort = minPort
        engine.maxPort = maxPort

        // Credentials.
        let realm = o.auth.realm
        if realm.isEmpty { throw ValidationError("--realm must not be empty.") }
        if realm.utf8.count > 763 { throw ValidationError("--realm is longer than 763 bytes (RFC 8489 §14.9).") }
        var passwords: [String: String] = [:]
        var keys: [String: [LongTermKey]] = [:]
        for entry in o.auth.users {
            guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex,
                entry.index(after: colon) != entry.endIndex
            else {
                throw ValidationError(
                    "--user '\(Settings.redact(entry))': expected name:password (or name:0x<32 hex digits> for a precomputed key).")
            }
            let name = String(entry[..<colon])
            let secret = String(entry[entry.index(after: colon)...])
            if passwords[name] != nil || keys[name] != nil {
                throw ValidationError("--user \(name) is given twice.")
            }
            if secret.hasPrefix("0x") || secret.hasPrefix("0X") {
                guard let key = LongTermKey(hex: secret) else {
                    throw ValidationError(
                        "--user \(name): a key after 0x must be 32 hex digits (MD5) or 64 (SHA-256).")
                }
                keys[name] = [key]
            } else {
                passwords[name] = secret
            }
        }
        var rest: RESTCredentials?
        let secrets = o.auth.staticAuthSecrets
        if o.auth.useAuthSecret {
            if secrets.isEmpty {
                throw ValidationError(
                    "--use-auth-secret needs at least one --static-auth-secret (uturn has no secret database).")
            }
            if secrets.contains(where: \.isEmpty) { throw ValidationError("--static-auth-secret must not be empty.") }
            guard o.auth.restAPISeparator.utf8.count == 1, let sep = o.auth.restAPISeparator.utf8.first,
                !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(sep)
            else {
                throw ValidationError("--rest-api-separator must be one ASCII character other than a digit.")
            }
            rest = RESTCredentials(secrets: secrets, separator: sep)
            if secrets.contains(where: { $0.utf8.count < 16 }) {
                warnings.append("a --static-auth-secret is shorter than 16 characters; REST passwords made with it are easy to guess")
            }
        } else if !secrets.isEmpty {
            throw ValidationError("--static-auth-secret is given without --use-auth-secret; add --use-auth-secret to accept REST API credentials.")
        }
        if passwords.isEmpty && keys.isEmpty && rest == nil {
            throw ValidationError(
                "no credentials: give --user name:password, or --use-auth-secret with --static-auth-secret (uturn always authenticates).")
        }
        let credentials = CredentialStore(realm: realm, users: passwords, keys: keys, rest: rest)

        // Peers.
        var allowed: [CIDR] = []
        var denied: [CIDR] = []
        for text in o.peers.allowedPeerIPs {
            guard let blocks = parseAddressBlocks(text) else { throw Settings.badBlock("--allowed-peer-ip", text) }
            allowed += blocks
        }
        for text in o.peers.deniedPeerIPs {
            guard let blocks = parseAddressBlocks(text) else { throw Settings.badBlock("--denied-peer-ip", text) }
            denied += blocks
        }
        if o.peers.allowLoopbackPeers {
            warnings.append(
                "--allow-loopback-peers: clients may relay to this host's loopback services (127.0.0.0/8, ::1). FOR TESTING ONLY; never use it on a reachable server.")
        }
        let policy = PeerPolicy(
            allowLoopbackPeers: o.peers.allowLoopbackPeers, allowed: allowed, denied: denied,
            serverAddresses: serverAddresses)

        // Limits.
        let l = o.limits
        if l.userQuota < 0 { throw ValidationError("--user-quota \(l.userQuota) must be 0 (unlimited) or more.") }
        if l.totalQuota < 0 { throw ValidationError("--total-quota \(l.totalQuota) must be 0 (unlimited) or more.") }
        if !(1...86400).contains(l.maxAllocateLifetime) {
            throw ValidationError("--max-allocate-lifetime \(l.maxAllocateLifetime) must be 1...86400 seconds.")
        }
        if !(1...604800).contains(l.staleNonce) {
            throw ValidationError("--stale-nonce \(l.staleNonce) must be 1...604800 seconds.")
        }
        if !(0...3600).contains(l.drainTimeout) {
            throw ValidationError("--drain-timeout \(l.drainTimeout) must be 0...3600 seconds.")
        }
        var turn = TURNConfiguration(
            credentials: credentials, peerPolicy: policy, nonces: NonceCodec(lifetime: UInt32(l.staleNonce)))
        turn.maxLifetime = UInt32(l.maxAllocateLifetime)
        turn.defaultLifetime = min(turn.defaultLifetime, turn.maxLifetime)
        turn.strictChannelNumbers = l.strictChannelNumbers
        turn.relayFamilies = Set(relays.map(\.family))

        // TCP and TLS listeners.
        let st = o.streams
        if !st.noTCP { engine.tcpListen = engine.listen }
        switch (st.cert, st.pkey) {
        case (nil, nil):
            break
        case (nil, _?):
            throw ValidationError("--pkey is given without --cert; TLS needs both.")
        case (_?, nil):
            throw ValidationError("--cert is given without --pkey; TLS needs both.")
        case (let cert?, let key?):
            if st.noTLS {
                notices.append("--no-tls: no TLS listener although --cert and --pkey are given")
            } else {
                let tlsPort = try Settings.port(st.tlsListeningPort, flag: "--tls-listening-port")
                if tlsPort == port && !st.noTCP {
                    throw ValidationError(
                        "--tls-listening-port \(tlsPort) is also the TCP listening port; choose another (coturn's default is 5349) or add --no-tcp.")
                }
                do {
                    engine.tls = try TLSServerContext(certificateFile: cert, privateKeyFile: key)
                } catch {
                    throw ValidationError("--cert \(cert) / --pkey \(key): \(error.description)")
                }
                engine.tlsListen = listenIPs.map { TransportAddress(ip: $0, port: tlsPort) }
            }
        }
        // RFC 6062 needs a client on TCP or TLS, so it is on when one can come.
        turn.tcpRelay = !st.noTCPRelay && !(engine.tcpListen.isEmpty && engine.tlsListen.isEmpty)
        engine.streamConnections = st.tcpConnections
        engine.streamConnectionsPerIP = st.tcpConnectionsPerIP
        engine.streamSendQueue = st.tcpSendQueue
        engine.streamIdleSeconds = st.tcpIdleTimeout
        engine.tlsHandshakeSeconds = st.tlsHandshakeTimeout
        engine.streamStallSeconds = st.tcpStallTimeout
        if o.compatibility.noDTLS {
            notices.append("--no-dtls: uturn has no DTLS listener anyway (not implemented)")
        }

        // Logging.
        let destination: LogDestination
        switch o.logging.logFile {
        case nil, "stderr", "-": destination = .standardError
        case "stdout": destination = .standardOutput
        case "syslog":
            throw ValidationError("--log-file syslog is not supported; log to stderr (journald keeps it) or a file.")
        case let path?:
            if path.isEmpty { throw ValidationError("--log-file must not be empty.") }
            destination = .file(path)
        }

        // Metrics endpoint.
        var metricsListen: TransportAddress?
        if let text = o.logging.metricsListen {
            guard let address = TransportAddress(text), address.port != 0 else {
                throw ValidationError(
                    "--metrics-listen '\(text)': expected address:port with a port 1...65535, such as 127.0.0.1:9641 or [::1]:9641.")
            }
            if address.ip.isMulticast {
                throw ValidationError("--metrics-listen \(address): a multicast address cannot accept TCP connections.")
            }
            metricsListen = address
        }

        // Engine.
        let e = o.engine
        engine.workers = e.workers ?? onlineCPUs
        if e.workers == nil, engine.workers > Int(maxPort) - Int(minPort) + 1 {
            engine.workers = Int(maxPort) - Int(minPort) + 1
        }
        engine.pinWorkers = e.pinWorkers
        for (value, flag) in [(e.sqEntries, "--sq-entries"), (e.cqEntries, "--cq-entries")]
        where value < 1 || value > Int(UInt32.max) {
            throw ValidationError("\(flag) \(value) is out of range.")
        }
        engine.sqEntries = UInt32(e.sqEntries)
        engine.cqEntries = UInt32(e.cqEntries)
        engine.buffers = e.buffers
        engine.bufferSize = e.bufferSize
        engine.sendOperations = e.sendOperations
        engine.maxBatch = e.maxBatch
        engine.batchWaitMicroseconds = e.batchWaitUs
        engine.singleShotReceive = e.noMultishot
        engine.noDeferTaskrun = e.noDeferTaskrun
        engine.noSingleIssuer = e.noSingleIssuer
        engine.gso = !e.noGSO
        engine.groClient = e.groClient
        engine.groPeer = e.groPeer
        engine.groBuffers = e.groBuffers
        engine.simulateRingFailure = e.simulateIOUringFailure
        if let problem = engine.problem() { throw ValidationError(problem + ".") }

        self.engine = engine
        self.turn = turn
        self.userQuota = l.userQuota
        self.totalQuota = l.totalQuota
        self.logLevel = o.logging.logLevel
        self.logDestination = destination
        self.drainSeconds = l.drainTimeout
        self.metricsListen = metricsListen
        self.userNames = (Array(passwords.keys) + Array(keys.keys)).sorted()
        self.hasDemoUser = passwords[Settings.demoUser.0] == Settings.demoUser.1
        self.warnings = warnings
        self.notices = notices
    }

    static func port(_ value: Int, flag: String) throws(ValidationError) -> UInt16 {
        guard (1...65535).contains(value) else { throw ValidationError("\(flag) \(value) must be 1...65535.") }
        return UInt16(value)
    }

    static func badBlock(_ flag: String, _ text: String) -> ValidationError {
        ValidationError(
            "\(flag) '\(text)': expected an address (10.1.2.3), a CIDR block (10.0.0.0/8, fc00::/7) or a range (10.0.0.0-10.255.255.255).")
    }

    /// A --user value with its password part hidden, for error messages.
    static func redact(_ entry: String) -> String {
        guard let colon = entry.firstIndex(of: ":") else { return entry }
        return entry[..<colon] + ":…"
    }

    /// Online CPUs (at least 1): the default worker count.
    public static func onlineCPUs() -> Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// What `--check-config` prints and start-up logs, one line each.
    public var summary: [String] {
        var lines: [String] = []
        for a in engine.listen { lines.append("listening on udp \(a)") }
        for a in engine.tcpListen { lines.append("listening on tcp \(a)") }
        for a in engine.tlsListen { lines.append("listening on tls \(a) (certificate \(engine.tls?.certificateFile ?? "?"))") }
        let relays = [engine.relayIPv4, engine.relayIPv6].compactMap { $0?.description }.joined(separator: " and ")
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
        lines.append(auth)
        let p = turn.peerPolicy
        lines.append(
            "peers: loopback \(p.allowLoopbackPeers ? "ALLOWED" : "denied"), private ranges denied, \(p.allowed.count) allow and \(p.denied.count) deny blocks")
        lines.append(
            "lifetimes: allocations up to \(turn.maxLifetime) s, nonces \(turn.nonces.lifetime) s; quotas: \(userQuota == 0 ? "none" : "\(userQuota)") per user, \(totalQuota == 0 ? "none" : "\(totalQuota)") in total")
        if let metricsListen { lines.append("metrics: http://\(metricsListen)/metrics") }
        return lines
    }
}

extension IPAddress {
    var isUnspecified: Bool { family == .v4 ? v4 == 0 : high == 0 && low == 0 }
    var isMulticast: Bool { family == .v4 ? v4 >> 28 == 0xE : high >> 56 == 0xFF }
}
