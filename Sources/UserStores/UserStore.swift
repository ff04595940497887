/// What a credential database holds for one realm, read in one go: coturn's
/// tables (turnusers_lt, turn_secret, allowed_peer_ip, denied_peer_ip,
/// turn_realm_option) or its Redis keys. uturnd keeps the last snapshot it read, so a database
/// that goes down leaves every user it knew working.
public struct StoreSnapshot: Sendable, Equatable {
    /// name → coturn's hex key (`hmackey`, 32 hex digits for MD5, 64 for
    /// SHA-256) or, for Redis users stored with `/password`, the password.
    public var users: [String: StoredSecret] = [:]
    /// TURN REST API shared secrets (turn_secret), in a stable order.
    public var secrets: [String] = []
    /// allowed_peer_ip / denied_peer_ip ranges, as coturn writes them.
    public var allowedPeers: [String] = []
    public var deniedPeers: [String] = []
    /// The realm's options (turn_realm_option, or Redis
    /// `turn/realm/<realm>/<option>`): option name → value as stored
    /// (`max-bps`, `total-quota`, `user-quota`).
    public var realmOptions: [String: String] = [:]

    public init() {}
}

/// How a user's credential is stored.
public enum StoredSecret: Sendable, Equatable {
    /// coturn's hex key, without the `0x`.
    case key(String)
    /// A plain password (Redis `.../password`).
    case password(String)
}

/// A database failure, with the cause in words (logged once per outage).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One row of a realm option (turn_realm_option).
public struct RealmOption: Sendable, Equatable {
    public var realm: String
    public var name: String
    public var value: String

    public init(realm: String, name: String, value: String) {
        self.realm = realm
        self.name = name
        self.value = value
    }
}

/// A credential database: what uturnd reads and what uturnadmin writes.
/// Implementations hold one connection and are used by one thread at a
/// time (uturnd's credential thread, or uturnadmin's main); none of them
/// ever runs on a relay worker.
public protocol UserStore: AnyObject {
    /// A value that changes whenever the data may have changed, or nil when
    /// the store has no cheap way to tell (the caller then reads a snapshot).
    func changeMarker() throws(StoreError) -> Int64?
    /// Everything uturnd needs for `realm`.
    func snapshot(realm: String) throws(StoreError) -> StoreSnapshot

    /// One user's secret in `realm`, or nil when there is none: the
    /// on-miss lookup of a name the last snapshot did not hold.
    func key(for user: String, realm: String) throws(StoreError) -> StoredSecret?

    /// Adds or replaces a long-term user's key (hex, no `0x`).
    func setUser(_ name: String, realm: String, key: String) throws(StoreError)
    /// Deletes a user; false when there was none.
    func deleteUser(_ name: String, realm: String) throws(StoreError) -> Bool
    /// (name, realm) pairs, sorted; all realms when `realm` is nil.
    func users(realm: String?) throws(StoreError) -> [(name: String, realm: String)]

    func addSecret(_ value: String, realm: String) throws(StoreError)
    /// Deletes one secret, or all of the realm's when `value` is nil.
    func deleteSecret(_ value: String?, realm: String) throws(StoreError)
    func secrets(realm: String?) throws(StoreError) -> [(value: String, realm: String)]

    /// allowed_peer_ip (allow) or denied_peer_ip.
    func addPeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError)
    func deletePeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError)

    func setRealmOption(_ option: RealmOption) throws(StoreError)
    func realmOptions(realm: String?) throws(StoreError) -> [RealmOption]
}

/// Where a store is: coturn's option values, parsed.
public enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    /// `userdb=PATH` (SQLite).
    case sqlite(path: String)
    /// `psql-userdb="host=... dbname=... user=... password=..."` (libpq's conninfo).
    case postgres(conninfo: String)
    /// `redis-userdb="ip=... dbname=... password=... port=..."`.
    case redis(RedisAddress)

    /// Opens a connection (SQLite creates coturn's tables when missing).
    public func open() throws(StoreError) -> any UserStore {
        switch self {
        case .sqlite(let path): return try SQLiteStore(path: path)
        case .postgres(let conninfo): return try PostgresStore(conninfo: conninfo)
        case .redis(let address): return try RedisStore(address: address)
        }
    }

    /// For logs: never shows a password.
    public var description: String {
        switch self {
        case .sqlite(let path): return "SQLite \(path)"
        case .postgres(let conninfo): return "PostgreSQL \(StoreLocation.redactedConninfo(conninfo))"
        case .redis(let a): return "Redis \(a.host):\(a.port) db \(a.database)"
        }
    }

    static func redactedConninfo(_ text: String) -> String {
        text.split(separator: " ").map { $0.hasPrefix("password=") ? "password=…" : String($0) }.joined(separator: " ")
    }
}

/// coturn's Redis connection string: space-separated key=value pairs
/// (`ip`, `host`, `port`, `dbname`/`database`/`db`, `password`,
/// `connect_timeout`).
public struct RedisAddress: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 6379
    public var database = 0
    public var password: String? = nil
    public var connectTimeoutSeconds = 2

    public init() {}

    public init(parsing text: String) throws(StoreError) {
        for field in text.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard let eq = field.firstIndex(of: "=") else {
                throw StoreError("redis-userdb: '\(field)' is not key=value")
            }
            let key = field[..<eq].lowercased()
            let value = String(field[field.index(after: eq)...])
            switch key {
            case "ip", "host": host = value
            case "port":
                guard let p = Int(value), (1...65535).contains(p) else { throw StoreError("redis-userdb: bad port '\(value)'") }
                port = p
            case "dbname", "database", "db":
                guard let d = Int(value), d >= 0 else { throw StoreError("redis-userdb: bad dbname '\(value)' (a number)") }
                database = d
            case "password": password = value
            case "connect_timeout":
                guard let t = Int(value), t > 0 else { throw StoreError("redis-userdb: bad connect_timeout '\(value)'") }
                connectTimeoutSeconds = t
            default: throw StoreError("redis-userdb: unknown key '\(key)'")
            }
        }
    }
}
