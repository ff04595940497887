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
}
