import CSQLite

/// coturn's SQLite user database (`userdb=PATH`), same file format: a file
/// written by coturn's turnadmin is read as is, and the other way round.
///
/// The change marker is `PRAGMA data_version`, which moves whenever another
/// connection commits to the file, so polling it costs no table read.
public final class SQLiteStore: UserStore {
    /// Invariant: open from init to deinit, used by one thread at a time.
    private let db: OpaquePointer

    /// coturn's tables (its turndb/schema.sql, the SQLite form), created
    /// when the file is new, as coturn does.
    static let schema = """
        CREATE TABLE IF NOT EXISTS turnusers_lt ( realm varchar(127) default '', name varchar(512), hmackey char(128), PRIMARY KEY (realm,name));
        CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(127), primary key (realm,value));
        CREATE TABLE IF NOT EXISTS allowed_peer_ip (realm varchar(127) default '', ip_range varchar(256), primary key (realm,ip_range));
        CREATE TABLE IF NOT EXISTS denied_peer_ip (realm varchar(127) default '', ip_range varchar(256), primary key (realm,ip_range));
        CREATE TABLE IF NOT EXISTS turn_origin_to_realm (origin varchar(127),realm varchar(127),primary key (origin));
        CREATE TABLE IF NOT EXISTS turn_realm_option (realm varchar(127) default '', opt varchar(32), value varchar(128), primary key (realm,opt));
        CREATE TABLE IF NOT EXISTS oauth_key (kid varchar(128),ikm_key varchar(256),timestamp bigint default 0,lifetime integer default 0,as_rs_alg varchar(64) default '',realm varchar(127) default '',primary key (kid));
        CREATE TABLE IF NOT EXISTS admin_user (name varchar(32), realm varchar(127), password varchar(127), primary key (name));
        """

    public init(path: String) throws(StoreError) {
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let handle else {
            let why = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            if let handle { sqlite3_close(handle) }
            throw StoreError("cannot open \(path): \(why)")
        }
        db = handle
        // A writer (turnadmin) holding the lock briefly must not fail a poll.
        sqlite3_busy_timeout(db, 1000)
        if sqlite3_exec(db, SQLiteStore.schema, nil, nil, nil) != SQLITE_OK {
            let why = String(cString: sqlite3_errmsg(db))
            sqlite3_close(db)
            throw StoreError("cannot create coturn's tables in \(path): \(why)")
        }
    }

    deinit { sqlite3_close(db) }

    private func error(_ what: String) -> StoreError {
        StoreError("\(what): \(String(cString: sqlite3_errmsg(db)))")
    }

    /// Runs `sql` with text parameters; calls `row` with each result row's text columns.
    private func run(_ sql: String, _ parameters: [String] = [], row: (([String]) -> Void)? = nil) throws(StoreError) {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK, let statement else { throw error("SQLite") }
        defer { sqlite3_finalize(statement) }
        // SQLITE_TRANSIENT: SQLite copies the text before bind returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, p) in parameters.enumerated() {
            guard sqlite3_bind_text(statement, Int32(i + 1), p, -1, transient) == SQLITE_OK else { throw error("SQLite bind") }
        }
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw error("SQLite") }
            if let row {
                let n = sqlite3_column_count(statement)
                row((0..<n).map { c in sqlite3_column_text(statement, c).map { String(cString: $0) } ?? "" })
            }
        }
    }

    private func rows(_ sql: String, _ parameters: [String] = []) throws(StoreError) -> [[String]] {
        var out: [[String]] = []
        try run(sql, parameters) { out.append($0) }
        return out
    }

    public func changeMarker() throws(StoreError) -> Int64? {
        let r = try rows("PRAGMA data_version")
        return r.first.flatMap { Int64($0[0]) }
    }

    public func snapshot(realm: String) throws(StoreError) -> StoreSnapshot {
        var s = StoreSnapshot()
        // One read transaction: the five tables agree with each other.
        try run("BEGIN")
        defer { try? run("COMMIT") }
        for r in try rows("SELECT name, hmackey FROM turnusers_lt WHERE realm = ?", [realm]) {
            s.users[r[0]] = .key(r[1])
        }
        s.secrets = try rows("SELECT value FROM turn_secret WHERE realm = ? ORDER BY value", [realm]).map { $0[0] }
        s.allowedPeers = try rows("SELECT ip_range FROM allowed_peer_ip WHERE realm = ? ORDER BY ip_range", [realm]).map { $0[0] }
        s.deniedPeers = try rows("SELECT ip_range FROM denied_peer_ip WHERE realm = ? ORDER BY ip_range", [realm]).map { $0[0] }
        for r in try rows("SELECT opt, value FROM turn_realm_option WHERE realm = ?", [realm]) { s.realmOptions[r[0]] = r[1] }
        return s
    }

    public func key(for user: String, realm: String) throws(StoreError) -> StoredSecret? {
        try rows("SELECT hmackey FROM turnusers_lt WHERE realm = ? AND name = ?", [realm, user]).first.map {
            .key($0[0])
        }
    }

    public func setUser(_ name: String, realm: String, key: String) throws(StoreError) {
        try run("INSERT OR REPLACE INTO turnusers_lt (realm, name, hmackey) VALUES (?, ?, ?)", [realm, name, key])
    }

    public func deleteUser(_ name: String, realm: String) throws(StoreError) -> Bool {
        try run("DELETE FROM turnusers_lt WHERE realm = ? AND name = ?", [realm, name])
        return sqlite3_changes(db) > 0
    }

    public func users(realm: String?) throws(StoreError) -> [(name: String, realm: String)] {
        let r = realm == nil
            ? try rows("SELECT name, realm FROM turnusers_lt ORDER BY realm, name")
            : try rows("SELECT name, realm FROM turnusers_lt WHERE realm = ? ORDER BY name", [realm!])
        return r.map { ($0[0], $0[1]) }
    }

    public func addSecret(_ value: String, realm: String) throws(StoreError) {
        try run("INSERT OR REPLACE INTO turn_secret (realm, value) VALUES (?, ?)", [realm, value])
    }

    public func deleteSecret(_ value: String?, realm: String) throws(StoreError) {
        if let value {
            try run("DELETE FROM turn_secret WHERE realm = ? AND value = ?", [realm, value])
        } else {
            try run("DELETE FROM turn_secret WHERE realm = ?", [realm])
        }
    }

    public func secrets(realm: String?) throws(StoreError) -> [(value: String, realm: String)] {
        let r = realm == nil
            ? try rows("SELECT value, realm FROM turn_secret ORDER BY realm, value")
            : try rows("SELECT value, realm FROM turn_secret WHERE realm = ? ORDER BY value", [realm!])
        return r.map { ($0[0], $0[1]) }
    }

    public func addPeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError) {
        try run("INSERT OR REPLACE INTO \(allow ? "allowed_peer_ip" : "denied_peer_ip") (realm, ip_range) VALUES (?, ?)", [realm, range])
    }

    public func deletePeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError) {
        try run("DELETE FROM \(allow ? "allowed_peer_ip" : "denied_peer_ip") WHERE realm = ? AND ip_range = ?", [realm, range])
    }

    public func setRealmOption(_ option: RealmOption) throws(StoreError) {
        try run("INSERT OR REPLACE INTO turn_realm_option (realm, opt, value) VALUES (?, ?, ?)", [option.realm, option.name, option.value])
    }

    public func realmOptions(realm: String?) throws(StoreError) -> [RealmOption] {
        let r = realm == nil
            ? try rows("SELECT realm, opt, value FROM turn_realm_option ORDER BY realm, opt")
            : try rows("SELECT realm, opt, value FROM turn_realm_option WHERE realm = ? ORDER BY opt", [realm!])
        return r.map { RealmOption(realm: $0[0], name: $0[1], value: $0[2]) }
    }
}
