import ArgumentParser
import TURN
import UserStores

extension Settings {
    /// Auth group (`AuthOptions`): the realm, the static `--user`s and the
    /// TURN REST API secrets. uturn always authenticates, so one of the two
    /// kinds of credential is required.
    static func credentials(
        _ o: AuthOptions, warnings: inout [String]
    ) throws(ValidationError) -> (
        store: CredentialStore, userNames: [String], hasDemoUser: Bool, database: StoreLocation?
    ) {
        let realm = o.realm
        if realm.isEmpty { throw ValidationError("--realm must not be empty.") }
        if realm.utf8.count > 763 { throw ValidationError("--realm is longer than 763 bytes (RFC 8489 §14.9).") }
        do throws(OpaqueString.Failure) { _ = try OpaqueString.prepare(realm) } catch {
            throw ValidationError("--realm: \(Settings.describe(error)) (RFC 8265 OpaqueString).")
        }
        let (passwords, keys) = try Settings.staticUsers(o.users)
        let database = try Settings.userDatabase(o)
        let rest = try Settings.restCredentials(o, database: database != nil, warnings: &warnings)
        if passwords.isEmpty && keys.isEmpty && rest == nil && database == nil {
            throw ValidationError(
                "no credentials: give --user name:password, --use-auth-secret with --static-auth-secret, or a user database (--userdb, --psql-userdb, --redis-userdb); uturn always authenticates.")
        }
        return (
            store: CredentialStore(realm: realm, users: passwords, keys: keys, rest: rest),
            userNames: (Array(passwords.keys) + Array(keys.keys)).sorted(),
            hasDemoUser: passwords[Settings.demoUser.0] == Settings.demoUser.1,
            database: database
        )
    }

    /// `--userdb`, `--psql-userdb` or `--redis-userdb`: at most one.
    static func userDatabase(_ o: AuthOptions) throws(ValidationError) -> StoreLocation? {
        var found: [StoreLocation] = []
        if let path = o.sqliteUserDB {
            if path.isEmpty { throw ValidationError("--userdb must name a file.") }
            found.append(.sqlite(path: path))
        }
        if let info = o.postgresUserDB {
            if info.isEmpty { throw ValidationError("--psql-userdb must not be empty.") }
            found.append(.postgres(conninfo: info))
        }
        if let text = o.redisUserDB {
            do throws(StoreError) { found.append(.redis(try RedisAddress(parsing: text))) } catch {
                throw ValidationError("--\(error.description)")
            }
        }
        if found.count > 1 { throw ValidationError("give one user database: --userdb, --psql-userdb or --redis-userdb.") }
        return found.first
    }

    /// `--user`: name:password, or name:0x<hex> for coturn's precomputed key;
    /// each name once.
    static func staticUsers(
        _ entries: [String]
    ) throws(ValidationError) -> (passwords: [String: String], keys: [String: [LongTermKey]]) {
        var passwords: [String: String] = [:]
        var keys: [String: [LongTermKey]] = [:]
        for entry in entries {
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
            // RFC 8489 §9.2.2: names and passwords are prepared with OpaqueString.
            do throws(OpaqueString.Failure) { _ = try OpaqueString.prepare(name) } catch {
                throw ValidationError("--user \(name): the name has \(Settings.describe(error)) (RFC 8265 OpaqueString).")
            }
            if secret.hasPrefix("0x") || secret.hasPrefix("0X") {
                guard let key = LongTermKey(hex: secret) else {
                    throw ValidationError(
                        "--user \(name): a key after 0x must be 32 hex digits (MD5) or 64 (SHA-256).")
                }
                keys[name] = [key]
            } else {
                do throws(OpaqueString.Failure) { _ = try OpaqueString.prepare(secret) } catch {
                    // The password itself is never shown; the code point is.
                    throw ValidationError("--user \(name): the password has \(Settings.describe(error)) (RFC 8265 OpaqueString).")
                }
                passwords[name] = secret
            }
        }
        return (passwords, keys)
    }

    /// `--use-auth-secret` with its `--static-auth-secret`s and
    /// `--rest-api-separator` (nil: REST API credentials off).
    static func restCredentials(
        _ o: AuthOptions, database: Bool = false, warnings: inout [String]
    ) throws(ValidationError) -> RESTCredentials? {
        let secrets = o.staticAuthSecrets
        guard o.useAuthSecret else {
            if !secrets.isEmpty {
                throw ValidationError("--static-auth-secret is given without --use-auth-secret; add --use-auth-secret to accept REST API credentials.")
            }
            return nil
        }
        // With a database, the secrets may all come from its turn_secret table.
        if secrets.isEmpty && !database {
            throw ValidationError(
                "--use-auth-secret needs at least one --static-auth-secret or a user database holding secrets (turn_secret).")
        }
        if secrets.contains(where: \.isEmpty) { throw ValidationError("--static-auth-secret must not be empty.") }
        guard o.restAPISeparator.utf8.count == 1, let sep = o.restAPISeparator.utf8.first,
            !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(sep)
        else {
            throw ValidationError("--rest-api-separator must be one ASCII character other than a digit.")
        }
        let rest = RESTCredentials(secrets: secrets, separator: sep)
        if secrets.contains(where: { $0.utf8.count < 16 }) {
            warnings.append("a --static-auth-secret is shorter than 16 characters; REST passwords made with it are easy to guess")
        }
        return rest
    }

    /// A --user value with its password part hidden, for error messages.
    static func redact(_ entry: String) -> String {
        guard let colon = entry.firstIndex(of: ":") else { return entry }
        return entry[..<colon] + ":…"
    }
}

extension Settings {
    /// What OpaqueString refused, in words.
    static func describe(_ failure: OpaqueString.Failure) -> String {
        switch failure {
        case .empty: "nothing left after preparation"
        case .disallowed(let scalar):
            "a character that is not allowed: U+\(String(scalar.value, radix: 16, uppercase: true))"
        }
    }
}
