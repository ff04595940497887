import CPostgres
import Glibc

/// coturn's PostgreSQL user database (`psql-userdb`), through libpq and
/// coturn's own schema (turndb/schema.sql). PostgreSQL has no cheap change
/// counter an unprivileged user can read, so uturnd polls a snapshot.
public final class PostgresStore: UserStore {
    /// Invariant: a live PGconn from init to deinit, used by one thread at a time.
    private let connection: OpaquePointer

    /// coturn's tables, created when missing (coturn's schema.sql, PostgreSQL form).
    static let schema = [
        "CREATE TABLE IF NOT EXISTS turnusers_lt ( realm varchar(127) default '', name varchar(512), hmackey char(128), PRIMARY KEY (realm,name))",
        "CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(256), primary key (realm,value))",
        "CREATE TABLE IF NOT EXISTS allowed_peer_ip (realm varchar(127) default '', ip_range varchar(256), primary key (realm,ip_range))",
        "CREATE TABLE IF NOT EXISTS denied_peer_ip (realm varchar(127) default '', ip_range varchar(256), primary key (realm,ip_range))",
        "CREATE TABLE IF NOT EXISTS turn_origin_to_realm (origin varchar(127), realm varchar(127), primary key (origin))",
        "CREATE TABLE IF NOT EXISTS turn_realm_option (realm varchar(127) default '', opt varchar(32), value varchar(128), primary key (realm,opt))",
        "CREATE TABLE IF NOT EXISTS admin_user (name varchar(32), realm varchar(127), password varchar(127), primary key (name))",
    ]

    public init(conninfo: String) throws(StoreError) {
        // A database that does not answer must not hold the credential thread for long.
        let info = conninfo.contains("connect_timeout") ? conninfo : conninfo + " connect_timeout=2"
        guard let conn = PQconnectdb(info) else { throw StoreError("libpq: out of memory") }
        guard PQstatus(conn) == CONNECTION_OK else {
            let why = String(cString: PQerrorMessage(conn)).trimmingNewlines()
            PQfinish(conn)
            throw StoreError(why)
        }
        connection = conn
        // A role without CREATE still reads tables an operator made with coturn's schema.sql.
        for sql in PostgresStore.schema { _ = try? rows(sql) }
    }

    deinit { PQfinish(connection) }

    /// Runs `sql` with text parameters ($1, $2, …) and returns the rows as text.
    @discardableResult
    private func rows(_ sql: String, _ parameters: [String] = []) throws(StoreError) -> [[String]] {
        let cStrings = parameters.map { strdup($0) }
        defer { for p in cStrings { free(p) } }
        var pointers: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
        guard let result = PQexecParams(connection, sql, Int32(parameters.count), nil, &pointers, nil, nil, 0) else {
            throw StoreError(String(cString: PQerrorMessage(connection)).trimmingNewlines())
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            throw StoreError(String(cString: PQresultErrorMessage(result)).trimmingNewlines())
        }
        var out: [[String]] = []
        let n = PQntuples(result), m = PQnfields(result)
        for r in 0..<n {
            out.append((0..<m).map { c in String(cString: PQgetvalue(result, r, c)) })
        }
        return out
    }

    public func changeMarker() throws(StoreError) -> Int64? {
        // Also the liveness check: a dropped connection fails here.
        try rows("SELECT 1")
        return nil
    }

    public func snapshot(realm: String) throws(StoreError) -> StoreSnapshot {
        var s = StoreSnapshot()
        for r in try rows("SELECT name, hmackey FROM turnusers_lt WHERE realm = $1", [realm]) {
            s.users[r[0]] = .key(r[1].trimmingCharacters(in: " "))
        }
        s.secrets = try rows("SELECT value FROM turn_secret WHERE realm = $1 ORDER BY value", [realm]).map { $0[0] }
        s.allowedPeers = try rows("SELECT ip_range FROM allowed_peer_ip WHERE realm = $1 ORDER BY ip_range", [realm]).map { $0[0] }
        s.deniedPeers = try rows("SELECT ip_range FROM denied_peer_ip WHERE realm = $1 ORDER BY ip_range", [realm]).map { $0[0] }
        // A schema without the table (a role that could not create it) has no options.
        for r in (try? rows("SELECT opt, value FROM turn_realm_option WHERE realm = $1", [realm])) ?? [] {
            s.realmOptions[r[0]] = r[1].trimmingCharacters(in: " ")
        }
        return s
    }

    public func key(for user: String, realm: String) throws(StoreError) -> StoredSecret? {
        try rows("SELECT hmackey FROM turnusers_lt WHERE realm = $1 AND name = $2", [realm, user]).first.map {
            .key($0[0].trimmingCharacters(in: " "))
        }
    }

    public func setUser(_ name: String, realm: String, key: String) throws(StoreError) {
        try rows(
            "INSERT INTO turnusers_lt (realm, name, hmackey) VALUES ($1, $2, $3) ON CONFLICT (realm, name) DO UPDATE SET hmackey = EXCLUDED.hmackey",
            [realm, name, key])
    }

    public func deleteUser(_ name: String, realm: String) throws(StoreError) -> Bool {
        !(try rows("DELETE FROM turnusers_lt WHERE realm = $1 AND name = $2 RETURNING name", [realm, name])).isEmpty
    }

    public func users(realm: String?) throws(StoreError) -> [(name: String, realm: String)] {
        let r = realm == nil
            ? try rows("SELECT name, realm FROM turnusers_lt ORDER BY realm, name")
            : try rows("SELECT name, realm FROM turnusers_lt WHERE realm = $1 ORDER BY name", [realm!])
        return r.map { ($0[0], $0[1]) }
    }

    public func addSecret(_ value: String, realm: String) throws(StoreError) {
        try rows("INSERT INTO turn_secret (realm, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", [realm, value])
    }

    public func deleteSecret(_ value: String?, realm: String) throws(StoreError) {
        if let value {
            try rows("DELETE FROM turn_secret WHERE realm = $1 AND value = $2", [realm, value])
        } else {
            try rows("DELETE FROM turn_secret WHERE realm = $1", [realm])
        }
    }

    public func secrets(realm: String?) throws(StoreError) -> [(value: String, realm: String)] {
        let r = realm == nil
            ? try rows("SELECT value, realm FROM turn_secret ORDER BY realm, value")
            : try rows("SELECT value, realm FROM turn_secret WHERE realm = $1 ORDER BY value", [realm!])
        return r.map { ($0[0], $0[1]) }
    }

    public func addPeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError) {
        try rows("INSERT INTO \(allow ? "allowed_peer_ip" : "denied_peer_ip") (realm, ip_range) VALUES ($1, $2) ON CONFLICT DO NOTHING", [realm, range])
    }

    public func deletePeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError) {
        try rows("DELETE FROM \(allow ? "allowed_peer_ip" : "denied_peer_ip") WHERE realm = $1 AND ip_range = $2", [realm, range])
    }

    public func setRealmOption(_ option: RealmOption) throws(StoreError) {
        try rows(
            "INSERT INTO turn_realm_option (realm, opt, value) VALUES ($1, $2, $3) ON CONFLICT (realm, opt) DO UPDATE SET value = EXCLUDED.value",
            [option.realm, option.name, option.value])
    }

    public func realmOptions(realm: String?) throws(StoreError) -> [RealmOption] {
        let r = realm == nil
            ? try rows("SELECT realm, opt, value FROM turn_realm_option ORDER BY realm, opt")
            : try rows("SELECT realm, opt, value FROM turn_realm_option WHERE realm = $1 ORDER BY opt", [realm!])
        return r.map { RealmOption(realm: $0[0], name: $0[1], value: $0[2]) }
    }
}

extension String {
    func trimmingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" { s = s.dropLast() }
        return String(s)
    }

    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s = s.dropLast() }
        while s.first == set { s = s.dropFirst() }
        return String(s)
    }
}
