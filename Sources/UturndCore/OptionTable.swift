/// The option names the config file and the command-line pre-scan know,
/// and how each takes its value. It mirrors the `@Option`/`@Flag`
/// declarations in `OptionGroups.swift` (a test checks every entry parses).
public enum OptionTable {
    public enum Kind: Sendable, Equatable {
        /// A boolean: present or not.
        case flag
        /// One value; a later occurrence replaces an earlier one.
        case value
        /// Repeatable; occurrences accumulate.
        case list
    }

    public static let kinds: [String: Kind] = [
        // listening and relay
        "listening-ip": .list, "listening-port": .value, "relay-ip": .list, "external-ip": .value,
        "min-port": .value, "max-port": .value,
        // credentials
        "realm": .value, "user": .list, "lt-cred-mech": .flag, "use-auth-secret": .flag,
        "static-auth-secret": .list, "rest-api-separator": .value,
        "userdb": .value, "db": .value, "psql-userdb": .value, "sql-userdb": .value, "redis-userdb": .value,
        // peers
        "allow-loopback-peers": .flag, "allowed-peer-ip": .list, "denied-peer-ip": .list,
        "no-multicast-peers": .flag,
        // limits
        "user-quota": .value, "total-quota": .value, "max-allocate-lifetime": .value, "stale-nonce": .value,
        "strict-channel-numbers": .flag, "drain-timeout": .value, "max-bps": .value, "bps-capacity": .value,
        "bps-capacity-policy": .value, "user-max-bps": .value, "max-pps": .value, "max-new-peers-per-second": .value,
        // compatibility
        "no-dtls": .flag,
        "alt-listening-port": .value, "no-rfc5780": .flag,
        // TCP and TLS
        "no-tcp": .flag, "no-tls": .flag, "no-tcp-relay": .flag, "cert": .value, "pkey": .value, "tls-listening-port": .value,
        "dtls-listening-port": .value,
        "tcp-connections": .value, "tcp-connections-per-ip": .value, "tcp-send-queue": .value,
        "tcp-idle-timeout": .value, "tls-handshake-timeout": .value, "tcp-stall-timeout": .value,
        // service
        "no-udp": .flag, "no-udp-relay": .flag, "stun-only": .flag, "no-stun": .flag, "secure-stun": .flag,
        "no-software-attribute": .flag, "server-name": .value, "permission-lifetime": .value,
        "channel-lifetime": .value, "check-origin-consistency": .flag, "mobility": .flag,
        // request limits and redirects
        "failed-request-rate": .value, "failed-request-rate-total": .value, "binding-request-rate": .value,
        "alternate-server": .list, "alternate-server-policy": .value, "nonce-secret-file": .value,
        // logging
        "log-file": .value, "log-level": .value, "metrics-listen": .value,
        // admin API
        "admin-listen": .value, "admin-token-file": .value, "admin-cert": .value, "admin-pkey": .value,
        // engine
        "workers": .value, "pin-workers": .flag, "sq-entries": .value, "cq-entries": .value, "buffers": .value,
        "buffer-size": .value, "send-ops": .value, "max-batch": .value, "batch-wait-us": .value, "no-multishot": .flag,
        "no-defer-taskrun": .flag, "no-single-issuer": .flag, "no-gso": .flag, "gro-client": .flag,
        "gro-peer": .flag, "gro-buffers": .value, "offload": .value, "backend": .value, "offload-interface": .value,
        "kernel-source-filter": .value,
        "simulate-io-uring-failure": .flag,
    ]

    /// coturn's short letters that uturn keeps, by long name.
    public static let shortNames: [Character: String] = [
        "L": "listening-ip", "p": "listening-port", "E": "relay-ip", "X": "external-ip", "r": "realm",
        "u": "user", "a": "lt-cred-mech", "l": "log-file", "q": "user-quota", "Q": "total-quota",
        "S": "stun-only", "b": "userdb", "e": "psql-userdb", "N": "redis-userdb",
    ]

    /// Options that only make sense on the command line.
    public static let commandLineOnly: Set<String> = [
        "config", "check-config", "help", "version", "generate-completion-script", "experimental-dump-help",
    ]

    /// coturn's bare `stale-nonce` means "the default lifetime".
    static let bareDefaults: [String: String] = ["stale-nonce": "600"]

    /// The long option name an argument names, if it names one (`--x`, `--x=v`, `-L`).
    static func longName(of argument: String) -> String? {
        if argument.hasPrefix("--") {
            let body = argument.dropFirst(2)
            guard !body.isEmpty else { return nil }
            return String(body.prefix { $0 != "=" })
        }
        if argument.hasPrefix("-"), argument.count >= 2 {
            let letter = argument[argument.index(after: argument.startIndex)]
            return shortNames[letter]
        }
        return nil
    }
}
