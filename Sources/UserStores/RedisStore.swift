import CHiredis
import Glibc

/// coturn's Redis user database (`redis-userdb`), same key layout:
///   turn/realm/<realm>/user/<name>/key       coturn's hex key (string)
///   turn/realm/<realm>/user/<name>/password  a plain password (string)
///   turn/realm/<realm>/secret                REST API secrets (set)
///   turn/realm/<realm>/allowed-peer-ip, …/denied-peer-ip  (sets)
///   turn/realm/<realm>/<option>              realm options (string)
/// Redis has no change counter, so uturnd reads a snapshot on every poll
/// (a SCAN over the realm's user keys, which never blocks the server the
/// way KEYS does, then one MGET per batch).
public final class RedisStore: UserStore {
    /// Invariant: a connected redisContext from init to deinit, used by one thread at a time.
    private let context: UnsafeMutablePointer<redisContext>

    public init(address: RedisAddress) throws(StoreError) {
        let timeout = timeval(tv_sec: address.connectTimeoutSeconds, tv_usec: 0)
        guard let c = redisConnectWithTimeout(address.host, Int32(address.port), timeout) else {
            throw StoreError("hiredis: out of memory")
        }
        if c.pointee.err != 0 {
            let why = RedisStore.errorText(c)
            redisFree(c)
            throw StoreError("cannot connect to \(address.host):\(address.port): \(why)")
        }
        context = c
        // Replies must not hang the credential thread when the server stops answering.
        let io = timeval(tv_sec: 2, tv_usec: 0)
        _ = redisSetTimeout(c, io)
        if let password = address.password { _ = try command(["AUTH", password]) }
        if address.database != 0 { _ = try command(["SELECT", String(address.database)]) }
    }

    deinit { redisFree(context) }

    static func errorText(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// A reply, copied out of hiredis's tree.
    enum Reply {
        case text(String)
        case integer(Int64)
        case array([Reply])
        case null

        var text: String? { if case .text(let s) = self { return s } else { return nil } }
        var array: [Reply] { if case .array(let a) = self { return a } else { return [] } }
    }

    /// Sends one command (argument vector, so values need no quoting).
    @discardableResult
    func command(_ arguments: [String]) throws(StoreError) -> Reply {
        let cStrings = arguments.map { strdup($0) }
        defer { for p in cStrings { free(p) } }
        var argv: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
        var lengths: [Int] = arguments.map { $0.utf8.count }
        guard let raw = redisCommandArgv(context, Int32(arguments.count), &argv, &lengths) else {
            throw StoreError("Redis: \(RedisStore.errorText(context))")
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        if reply.pointee.type == REDIS_REPLY_ERROR {
            throw StoreError("Redis: \(RedisStore.copyText(reply))")
        }
        return RedisStore.copy(reply)
    }

    static func copyText(_ r: UnsafeMutablePointer<redisReply>) -> String {
        guard let s = r.pointee.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: s, count: Int(r.pointee.len)), as: UTF8.self)
    }

    static func copy(_ r: UnsafeMutablePointer<redisReply>) -> Reply {
        switch r.pointee.type {
        case REDIS_REPLY_STRING, REDIS_REPLY_STATUS: return .text(copyText(r))
        case REDIS_REPLY_INTEGER: return .integer(Int64(r.pointee.integer))
        case REDIS_REPLY_ARRAY:
            var items: [Reply] = []
            for i in 0..<Int(r.pointee.elements) {
                if let e = r.pointee.element[i] { items.append(copy(e)) }
            }
            return .array(items)
        default: return .null
        }
    }

    static func realmKey(_ realm: String) -> String { "turn/realm/\(realm)" }

    /// Every key matching `pattern`, by SCAN (a cursor walk in small steps).
    func keys(matching pattern: String) throws(StoreError) -> [String] {
        var cursor = "0"
        var out: Set<String> = []
        repeat {
            let reply = try command(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]).array
            guard reply.count == 2, let next = reply[0].text else { throw StoreError("Redis: unexpected SCAN reply") }
            for k in reply[1].array { if let k = k.text { out.insert(k) } }
            cursor = next
        } while cursor != "0"
        return out.sorted()
    }

    public func changeMarker() throws(StoreError) -> Int64? {
        try command(["PING"])
        return nil
    }

    public func snapshot(realm: String) throws(StoreError) -> StoreSnapshot {
        var s = StoreSnapshot()
        let base = RedisStore.realmKey(realm)
        let all = try keys(matching: "\(base)/user/*")
        for start in stride(from: 0, to: all.count, by: 1000) {
            let keys = Array(all[start..<min(start + 1000, all.count)])
            let values = try command(["MGET"] + keys).array
            for (key, value) in zip(keys, values) {
                guard let v = value.text else { continue }
                let rest = key.dropFirst(base.count + "/user/".count)
                if rest.hasSuffix("/key") {
                    s.users[String(rest.dropLast(4))] = .key(v)
                } else if rest.hasSuffix("/password"), s.users[String(rest.dropLast(9))] == nil {
                    s.users[String(rest.dropLast(9))] = .password(v)
                }
            }
        }
        s.secrets = try command(["SMEMBERS", "\(base)/secret"]).array.compactMap(\.text).sorted()
        s.allowedPeers = try command(["SMEMBERS", "\(base)/allowed-peer-ip"]).array.compactMap(\.text).sorted()
        s.deniedPeers = try command(["SMEMBERS", "\(base)/denied-peer-ip"]).array.compactMap(\.text).sorted()
        let names = RedisStore.realmOptionNames
        let options = try command(["MGET"] + names.map { "\(base)/\($0)" }).array
        for (name, value) in zip(names, options) { if let v = value.text { s.realmOptions[name] = v } }
        return s
    }

    public func key(for user: String, realm: String) throws(StoreError) -> StoredSecret? {
        // As in `snapshot`: a /key wins over a /password.
        let base = "\(RedisStore.realmKey(realm))/user/\(user)"
        let values = try command(["MGET", "\(base)/key", "\(base)/password"]).array
        if let k = values.first?.text { return .key(k) }
        if values.count > 1, let p = values[1].text { return .password(p) }
        return nil
    }

    public func setUser(_ name: String, realm: String, key: String) throws(StoreError) {
        let base = "\(RedisStore.realmKey(realm))/user/\(name)"
        try command(["DEL", "\(base)/password"])
        try command(["SET", "\(base)/key", key])
    }

    public func deleteUser(_ name: String, realm: String) throws(StoreError) -> Bool {
        let base = "\(RedisStore.realmKey(realm))/user/\(name)"
        if case .integer(let n) = try command(["DEL", "\(base)/key", "\(base)/password"]) { return n > 0 }
        return false
    }

    public func users(realm: String?) throws(StoreError) -> [(name: String, realm: String)] {
        let pattern = realm.map { "\(RedisStore.realmKey($0))/user/*" } ?? "turn/realm/*/user/*"
        var out: Set<String> = []
        var result: [(name: String, realm: String)] = []
        for key in try keys(matching: pattern) {
            // turn/realm/<realm>/user/<name>/(key|password)
            let parts = key.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count >= 6, parts[3] == "user" else { continue }
            let r = String(parts[2]), n = parts[4..<(parts.count - 1)].joined(separator: "/")
            if out.insert("\(r)\u{0}\(n)").inserted { result.append((n, r)) }
        }
        return result.sorted { ($0.realm, $0.name) < ($1.realm, $1.name) }
    }

    public func addSecret(_ value: String, realm: String) throws(StoreError) {
        try command(["SADD", "\(RedisStore.realmKey(realm))/secret", value])
    }

    public func deleteSecret(_ value: String?, realm: String) throws(StoreError) {
        let key = "\(RedisStore.realmKey(realm))/secret"
        if let value { try command(["SREM", key, value]) } else { try command(["DEL", key]) }
    }

    public func secrets(realm: String?) throws(StoreError) -> [(value: String, realm: String)] {
        let keys: [String]
        if let realm {
            keys = ["\(RedisStore.realmKey(realm))/secret"]
        } else {
            keys = try self.keys(matching: "turn/realm/*/secret")
        }
        var out: [(value: String, realm: String)] = []
        for key in keys {
            let r = String(key.split(separator: "/", omittingEmptySubsequences: false)[2])
            for v in try command(["SMEMBERS", key]).array.compactMap(\.text).sorted() { out.append((v, r)) }
        }
        return out
    }

    public func addPeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError) {
        try command(["SADD", "\(RedisStore.realmKey(realm))/\(allow ? "allowed" : "denied")-peer-ip", range])
    }

    public func deletePeerRange(_ range: String, realm: String, allow: Bool) throws(StoreError) {
        try command(["SREM", "\(RedisStore.realmKey(realm))/\(allow ? "allowed" : "denied")-peer-ip", range])
    }

    static let realmOptionNames = ["max-bps", "total-quota", "user-quota"]

    public func setRealmOption(_ option: RealmOption) throws(StoreError) {
        try command(["SET", "\(RedisStore.realmKey(option.realm))/\(option.name)", option.value])
    }

    public func realmOptions(realm: String?) throws(StoreError) -> [RealmOption] {
        var out: [RealmOption] = []
        for name in RedisStore.realmOptionNames {
            let pattern = "\(realm.map(RedisStore.realmKey) ?? "turn/realm/*")/\(name)"
            let keys = try keys(matching: pattern).sorted()
            for key in keys {
                guard let v = try command(["GET", key]).text else { continue }
                out.append(RealmOption(realm: String(key.split(separator: "/", omittingEmptySubsequences: false)[2]), name: name, value: v))
            }
        }
        return out.sorted { ($0.realm, $0.name) < ($1.realm, $1.name) }
    }
}
