/// coturn options that uturn does not implement, with the reason an operator
/// is told. In a config file they are ignored with a warning (so a coturn
/// `turnserver.conf` still starts); on the command line they are an error.
public enum CoturnOptions {
    static let tls = "uturn's TLS takes --cert and --pkey only (TLS 1.2 and 1.3, OpenSSL's default ciphers)"
    static let database = "uturn reads users and secrets from SQLite (userdb), PostgreSQL (psql-userdb) or Redis (redis-userdb) only"
    static let admin = "uturn has no telnet CLI or web admin; use its JSON admin API (--admin-listen, --admin-token-file) and uturnctl"
    static let process = "uturn runs in the foreground; let systemd (or similar) handle daemonising, users and pid files"
    static let logging = "use --log-level and --log-file"
    static let transport = "uturn serves TURN over UDP, TCP, TLS and DTLS, and relays UDP (and TCP for RFC 6062 clients)"
    static let missing = "not implemented in uturn"

    public static let unsupported: [String: String] = {
        var table: [String: String] = [:]
        func add(_ reason: String, _ names: [String]) { for n in names { table[n] = reason } }
        add(tls, [
            "pkey-pwd", "cipher-list", "CA-file", "ec-curve-name", "dh566", "dh1066", "dh2066",
            "dh-file", "no-tlsv1", "no-tlsv1_1", "no-tlsv1_2", "alt-tls-listening-port",
            "tls-alternate-server",
        ])
        add(database, [
            "mysql-userdb", "mysql-userdb-ssl", "mongo-userdb", "redis-statsdb", "secret-ts-exp-time", "oauth", "no-auth",
        ])
        add(admin, [
            "no-cli", "cli-ip", "cli-port", "cli-password", "cli-max-output-sessions", "web-admin", "web-admin-ip",
            "web-admin-port", "web-admin-listen-on-workers", "prometheus", "prometheus-port",
            "prometheus-address", "prometheus-path", "prometheus-username-labels", "acme-redirect",
        ])
        add(process, ["daemon", "pidfile", "proc-user", "proc-group"])
        add(logging, [
            "verbose", "Verbose", "syslog", "syslog-facility", "no-stdout-log", "simple-log", "new-log-timestamp",
            "new-log-timestamp-format", "log-binding",
        ])
        add(transport, ["tcp-proxy-port", "server-relay"])
        add(missing, [
            "fingerprint", "listening-device", "relay-device", "relay-threads", "aux-server", "udp-self-balance",
            "keep-address-family", "allocation-default-address-family",
            "no-stun-backward-compatibility", "response-origin-only-with-rfc5780", "respond-http-unsupported",
            "max-allocate-timeout", "ne",
        ])
        add("uturn denies loopback peers unless --allow-loopback-peers is given", ["no-loopback-peers"])
        return table
    }()
}
