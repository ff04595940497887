import ArgumentParser
import STUN
import TURN
import Testing
import UserStores
import UturndCore

@Suite("User database settings")
struct UserDatabaseSettingsTests {
    @Test func aDatabaseAloneIsEnoughCredentials() throws {
        let s = try settings(["--realm", "r", "--userdb", "/tmp/x.db"])
        #expect(s.userDatabase == .sqlite(path: "/tmp/x.db"))
        let p = try settings(["--psql-userdb", "host=127.0.0.1 dbname=turn password=pw"])
        #expect(p.userDatabase == .postgres(conninfo: "host=127.0.0.1 dbname=turn password=pw"))
        #expect(!"\(p.userDatabase!)".contains("pw\""))
        #expect("\(p.userDatabase!)".contains("password=…"))
        let r = try settings(["-N", "ip=127.0.0.2 port=7000 dbname=3"])
        guard case .redis(let a) = r.userDatabase else { Issue.record("not redis"); return }
        #expect(a.host == "127.0.0.2" && a.port == 7000 && a.database == 3)
        // Secrets may all come from the database.
        let rest = try settings(["--userdb", "/tmp/x.db", "--use-auth-secret"])
        #expect(rest.turn.credentials.rest?.secrets == [])
    }

    @Test func conflictsAndBadValuesAreErrors() {
        #expect(throws: (any Error).self) { try settings(["--userdb", "/a", "--redis-userdb", "ip=127.0.0.1"]) }
        #expect(throws: (any Error).self) { try settings(["--redis-userdb", "ip=127.0.0.1 port=0"]) }
        #expect(throws: (any Error).self) { try settings(["--use-auth-secret"]) }
        #expect(problem(["--mysql-userdb", "host=x"]) != nil)
    }

    @Test func databaseUsersSecretsAndPeersJoinTheStaticOnes() throws {
        let base = try settings(["--realm", "r", "--user", "alice:static-pw", "--use-auth-secret", "--static-auth-secret", "s0"]).turn
        var snap = StoreSnapshot()
        let bobKey = LongTermKey.derive(username: "bob", realm: "r", password: "bob-pw", algorithm: .md5)
        snap.users = [
            "alice": .key("00112233445566778899aabbccddeeff"),  // the static alice wins
            "bob": .key(bobKey.withUnsafeBytes { raw in
                raw.map { b in String(b >> 4, radix: 16) + String(b & 15, radix: 16) }.joined()
            }),
            "carol": .password("carol-pw"),
            "broken": .key("xyz"),
        ]
        snap.secrets = ["s1"]
        snap.deniedPeers = ["8.8.8.0/24", "not-a-range"]
        let (turn, problems) = CredentialSync.compose(base, snap)
        #expect(problems.count == 2)
        func accepts(_ user: String, _ password: String) -> Bool {
            let expected = LongTermKey.derive(username: user, realm: "r", password: password, algorithm: .md5)
            let outcome = Array(user.utf8).withUnsafeBytes {
                turn.credentials.authenticate(username: $0, algorithm: .md5, unixTime: 0) { $0 == expected }
            }
            return outcome == .accepted(expected)
        }
        #expect(accepts("alice", "static-pw"))
        #expect(accepts("bob", "bob-pw"))
        #expect(!accepts("bob", "other"))
        #expect(accepts("carol", "carol-pw"))
        #expect(!accepts("broken", "x"))
        #expect(turn.credentials.rest?.secrets == [Array("s0".utf8), Array("s1".utf8)])
        #expect(base.peerPolicy.isAllowed(IPAddress("8.8.8.8")!))
        #expect(!turn.peerPolicy.isAllowed(IPAddress("8.8.8.8")!))
    }

    @Test func incrementalUpdateMatchesAFreshCompose() throws {
        let base = try settings(["--realm", "r", "--user", "alice:static-pw"]).turn
        var old = StoreSnapshot()
        old.users = ["alice": .password("db-pw"), "bob": .password("bob-pw"), "carol": .password("carol-pw")]
        var new = old
        new.users["alice"] = nil            // the static alice must survive
        new.users["bob"] = .password("bob-pw2")
        new.users["carol"] = nil
        new.users["dave"] = .password("dave-pw")
        let (composed, _) = CredentialSync.compose(base, old)
        let (updated, problems) = try #require(CredentialSync.update(composed, base: base, from: old, to: new))
        let (fresh, _) = CredentialSync.compose(base, new)
        #expect(problems.isEmpty)
        for (user, password) in [
            ("alice", "static-pw"), ("alice", "db-pw"), ("bob", "bob-pw"), ("bob", "bob-pw2"), ("carol", "carol-pw"),
            ("dave", "dave-pw"),
        ] {
            let expected = LongTermKey.derive(username: user, realm: "r", password: password, algorithm: .sha256)
            func outcome(_ t: TURNConfiguration) -> AuthOutcome {
                Array(user.utf8).withUnsafeBytes {
                    t.credentials.authenticate(username: $0, algorithm: .sha256, unixTime: 0) { $0 == expected }
                }
            }
            #expect(outcome(updated) == outcome(fresh), "\(user) \(password)")
        }
        #expect(updated.credentials.hasUser("alice") && !updated.credentials.hasUser("carol"))
        #expect(userForHash(updated, "dave") == "dave")
        #expect(userForHash(updated, "carol") == nil)
        // A changed secret list needs a fresh compose.
        var rotated = new
        rotated.secrets = ["s"]
        #expect(CredentialSync.update(composed, base: base, from: old, to: rotated) == nil)
    }
}

/// The user a USERHASH for `user` in realm "r" names in `t`.
private func userForHash(_ t: TURNConfiguration, _ user: String) -> String? {
    CredentialStore.userHash(username: user, realm: "r").withUnsafeBytes { t.credentials.username(forUserHash: $0) }
}
