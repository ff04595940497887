import TURN

/// uturnadmin: coturn's turnadmin command line, for what operators script
/// (long-term users, REST secrets, keys, realm options) plus peer ranges.
/// Parsing and running live here (tested); Sources/uturnadmin is its main.
public struct AdminCommand: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        case key, add, delete, list
        case setSecret(String), showSecrets, deleteSecret(String), deleteAllSecrets
        case setRealmOptions, listRealmOptions
        case addPeer(String, allow: Bool), deletePeer(String, allow: Bool), listPeers
        case help
    }

    public var action: Action = .help
    public var user: String?
    public var realm: String?
    public var password: String?
    public var sha256 = false
    public var location: StoreLocation?
    public var realmOptions: [String: String] = [:]

    /// coturn's default SQLite file on Debian.
    public static let defaultDatabase = "/var/lib/turn/turndb"

    public init() {}

    /// Parses coturn's forms: `-u name`, `-uname`, `--user=name`, `--user name`.
    public init(arguments: [String]) throws(StoreError) {
        // long name → (short letter, takes a value)
        let table: [(short: Character?, long: [String], value: Bool)] = [
            ("k", ["key"], false), ("a", ["add"], false), ("d", ["delete"], false), ("l", ["list"], false),
            ("s", ["set-secret"], true), ("S", ["show-secret"], false), ("X", ["delete-secret"], true),
            (nil, ["delete-all-secrets", "delete-all_secrets"], false),
            ("g", ["set-realm-option"], false), ("G", ["list-realm-options"], false),
            ("b", ["db", "userdb"], true), ("e", ["psql-userdb", "sql-userdb"], true), ("N", ["redis-userdb"], true),
            ("M", ["mysql-userdb"], true), ("J", ["mongo-userdb"], true),
            ("u", ["user"], true), ("r", ["realm"], true), ("p", ["password"], true),
            (nil, ["sha256"], false),
            (nil, ["max-bps"], true), (nil, ["total-quota"], true), (nil, ["user-quota"], true),
            (nil, ["add-allowed-peer"], true), (nil, ["add-denied-peer"], true),
            (nil, ["delete-allowed-peer"], true), (nil, ["delete-denied-peer"], true), (nil, ["list-peers"], false),
            ("h", ["help"], false),
        ]
        var actions: [Action] = []
        var i = 0
        func entry(long: String) -> (Character?, [String], Bool)? { table.first { $0.long.contains(long) } }
        while i < arguments.count {
            let arg = arguments[i]
            var name: String
            var value: String?
            var takes: Bool
            if arg.hasPrefix("--") {
                let body = arg.dropFirst(2)
                let parts = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let e = entry(long: String(parts[0])) else { throw StoreError("unknown option \(arg) (see uturnadmin --help)") }
                name = e.1[0]
                takes = e.2
                if parts.count == 2 {
                    guard takes else { throw StoreError("\(arg): --\(name) takes no value") }
                    value = String(parts[1])
                }
            } else if arg.hasPrefix("-"), arg.count >= 2 {
                let letter = arg[arg.index(after: arg.startIndex)]
                guard let e = table.first(where: { $0.short == letter }) else { throw StoreError("unknown option \(arg) (see uturnadmin --help)") }
                name = e.long[0]
                takes = e.value
                let rest = arg.dropFirst(2)
                if !rest.isEmpty {
                    guard takes else { throw StoreError("\(arg): -\(letter) takes no value") }
                    value = String(rest)
                }
            } else {
                throw StoreError("unexpected argument '\(arg)' (see uturnadmin --help)")
            }
            if takes && value == nil {
                i += 1
                guard i < arguments.count else { throw StoreError("--\(name) needs a value") }
                value = arguments[i]
            }
            i += 1
            switch name {
            case "key": actions.append(.key)
            case "add": actions.append(.add)
            case "delete": actions.append(.delete)
            case "list": actions.append(.list)
            case "set-secret": actions.append(.setSecret(value!))
            case "show-secret": actions.append(.showSecrets)
            case "delete-secret": actions.append(.deleteSecret(value!))
            case "delete-all-secrets": actions.append(.deleteAllSecrets)
            case "set-realm-option": actions.append(.setRealmOptions)
            case "list-realm-options": actions.append(.listRealmOptions)
            case "add-allowed-peer": actions.append(.addPeer(value!, allow: true))
            case "add-denied-peer": actions.append(.addPeer(value!, allow: false))
            case "delete-allowed-peer": actions.append(.deletePeer(value!, allow: true))
            case "delete-denied-peer": actions.append(.deletePeer(value!, allow: false))
            case "list-peers": actions.append(.listPeers)
            case "help": actions.append(.help)
            case "db": try setLocation(.sqlite(path: value!))
            case "psql-userdb": try setLocation(.postgres(conninfo: value!))
            case "redis-userdb": try setLocation(.redis(try RedisAddress(parsing: value!)))
            case "mysql-userdb", "mongo-userdb":
                throw StoreError("--\(name) is not supported by uturn; use --db (SQLite), --psql-userdb or --redis-userdb")
            case "user": user = value
            case "realm": realm = value
            case "password": password = value
            case "sha256": sha256 = true
            case "max-bps", "total-quota", "user-quota":
                guard let n = Int(value!), n >= 0 else { throw StoreError("--\(name) needs a number, not '\(value!)'") }
                realmOptions[name] = String(n)
            default: break
            }
        }
        guard actions.count <= 1 else { throw StoreError("give one command (-k, -a, -d, -l, -s, -S, -X, -g, -G, …)") }
        action = actions.first ?? .help
        try validate()
    }

    private mutating func setLocation(_ l: StoreLocation) throws(StoreError) {
        if location != nil, location != l { throw StoreError("give one database: -b, -e or -N") }
        location = l
    }

    private func validate() throws(StoreError) {
        func need(_ v: String?, _ flag: String) throws(StoreError) {
            guard let v, !v.isEmpty else { throw StoreError("this command needs \(flag)") }
        }
        switch action {
        case .key, .add: try need(user, "-u <user>"); try need(realm, "-r <realm>"); try need(password, "-p <password>")
        case .delete: try need(user, "-u <user>"); try need(realm, "-r <realm>")
        case .setSecret(let v), .deleteSecret(let v):
            try need(v, "a secret"); try need(realm, "-r <realm>")
        case .deleteAllSecrets, .addPeer, .deletePeer: try need(realm, "-r <realm>")
        case .setRealmOptions:
            try need(realm, "-r <realm>")
            if realmOptions.isEmpty { throw StoreError("-g needs --max-bps, --total-quota or --user-quota") }
        default: break
        }
    }

    /// coturn's key for a long-term user, as hex without `0x`.
    public static func key(user: String, realm: String, password: String, sha256: Bool) -> String {
        let key = LongTermKey.derive(username: user, realm: realm, password: password, algorithm: sha256 ? .sha256 : .md5)
        return key.withUnsafeBytes { raw in
            raw.map { b in
                let digits = Array("0123456789abcdef")
                return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
            }.joined()
        }
    }

    /// Runs the command; the lines to print on standard output.
    public func run(open: (StoreLocation) throws(StoreError) -> any UserStore = { l throws(StoreError) in try l.open() })
        throws(StoreError) -> [String]
    {
        switch action {
        case .help: return [AdminCommand.usage]
        case .key: return ["0x" + AdminCommand.key(user: user!, realm: realm!, password: password!, sha256: sha256)]
        default: break
        }
        let store = try open(location ?? .sqlite(path: AdminCommand.defaultDatabase))
        switch action {
        case .help, .key: return []
        case .add:
            try store.setUser(user!, realm: realm!, key: AdminCommand.key(user: user!, realm: realm!, password: password!, sha256: sha256))
            return []
        case .delete:
            // Like turnadmin: deleting a user that is not there succeeds (scripts delete, then add).
            _ = try store.deleteUser(user!, realm: realm!)
            return []
        case .list: return try store.users(realm: realm).map { "\($0.name)[\($0.realm)]" }
        case .setSecret(let v): try store.addSecret(v, realm: realm!); return []
        case .showSecrets: return try store.secrets(realm: realm).map { "\($0.value)[\($0.realm)]" }
        case .deleteSecret(let v): try store.deleteSecret(v, realm: realm!); return []
        case .deleteAllSecrets: try store.deleteSecret(nil, realm: realm!); return []
        case .setRealmOptions:
            for (name, value) in realmOptions.sorted(by: { $0.key < $1.key }) {
                try store.setRealmOption(RealmOption(realm: realm!, name: name, value: value))
            }
            return []
        case .listRealmOptions: return try store.realmOptions(realm: realm).map { "\($0.name)[\($0.realm)]=\($0.value)" }
        case .addPeer(let range, let allow): try store.addPeerRange(range, realm: realm!, allow: allow); return []
        case .deletePeer(let range, let allow): try store.deletePeerRange(range, realm: realm!, allow: allow); return []
        case .listPeers:
            let s = try store.snapshot(realm: realm ?? "")
            return s.allowedPeers.map { "allow \($0)" } + s.deniedPeers.map { "deny \($0)" }
        }
    }

    public static let usage = """
        uturnadmin: manage uturnd's users and secrets in coturn's database formats
        (a drop-in for what coturn's turnadmin does with users, secrets and realm options).

        Commands (one per run):
          -k, --key                     print the key for -u/-r/-p (0x + hex; --sha256 for SHA-256)
          -a, --add                     add or update a long-term user (-u, -r, -p)
          -d, --delete                  delete a long-term user (-u, -r)
          -l, --list                    list users as name[realm] (all realms unless -r)
          -s, --set-secret=<secret>     add a TURN REST API shared secret (-r)
          -S, --show-secret             list shared secrets as secret[realm]
          -X, --delete-secret=<secret>  delete a shared secret (-r)
              --delete-all-secrets      delete all of a realm's shared secrets (-r)
          -g, --set-realm-option        set --max-bps, --total-quota, --user-quota for -r
          -G, --list-realm-options      list realm options
              --add-allowed-peer=<range>, --add-denied-peer=<range>
              --delete-allowed-peer=<range>, --delete-denied-peer=<range>
              --list-peers              peer ranges for -r (address, CIDR or first-last)
        Database (default: SQLite \(defaultDatabase)):
          -b, --db, --userdb=<file>     SQLite file (created with coturn's tables when missing)
          -e, --psql-userdb=<conninfo>  PostgreSQL, e.g. "host=127.0.0.1 dbname=turn user=turn password=..."
          -N, --redis-userdb=<conn>     Redis, e.g. "ip=127.0.0.1 port=6379 dbname=0 password=..."
        Options:
          -u, --user=<name>  -r, --realm=<realm>  -p, --password=<password>  --sha256
        """
}
