import Glibc
import Testing
import TURN
import UserStores

/// A fresh SQLite file path under /tmp, removed by the caller.
func temporaryDatabase() -> String {
    var template = Array("/tmp/uturn-userdb-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    close(fd)
    let path = String(cString: template)
    unlink(path)
    return path
}

@Suite("SQLite user store")
struct SQLiteStoreTests {
    @Test func usersSecretsAndPeersRoundTripPerRealm() throws {
        let path = temporaryDatabase()
        defer { unlink(path) }
        let store = try SQLiteStore(path: path)
        try store.setUser("alice", realm: "r1", key: "7f7ea3f802ba1386e35db21f025549e9")
        try store.setUser("bob", realm: "r2", key: "00112233445566778899aabbccddeeff")
        try store.addSecret("s1", realm: "r1")
        try store.addPeerRange("10.0.0.0/8", realm: "r1", allow: true)
        try store.addPeerRange("192.168.0.1-192.168.0.9", realm: "r1", allow: false)
        try store.setRealmOption(RealmOption(realm: "r1", name: "user-quota", value: "3"))
        try store.setRealmOption(RealmOption(realm: "r2", name: "max-bps", value: "9000"))
        let s = try store.snapshot(realm: "r1")
        #expect(s.realmOptions == ["user-quota": "3"])  // r2's are not r1's
        #expect(try store.snapshot(realm: "r2").realmOptions == ["max-bps": "9000"])
        #expect(s.users == ["alice": .key("7f7ea3f802ba1386e35db21f025549e9")])
        #expect(s.secrets == ["s1"])
        #expect(s.allowedPeers == ["10.0.0.0/8"])
        #expect(s.deniedPeers == ["192.168.0.1-192.168.0.9"])
        #expect(try store.users(realm: nil).map { "\($0.name)[\($0.realm)]" } == ["alice[r1]", "bob[r2]"])
        #expect(try store.deleteUser("alice", realm: "r1"))
        #expect(try !store.deleteUser("alice", realm: "r1"))
        try store.deleteSecret(nil, realm: "r1")
        #expect(try store.snapshot(realm: "r1") == {
            var e = StoreSnapshot()
            e.realmOptions = ["user-quota": "3"]
            e.allowedPeers = ["10.0.0.0/8"]
            e.deniedPeers = ["192.168.0.1-192.168.0.9"]
            return e
        }())
    }

    @Test func keyForOneUserIsPerRealm() throws {
        let path = temporaryDatabase()
        defer { unlink(path) }
        let store = try SQLiteStore(path: path)
        try store.setUser("alice", realm: "r1", key: "7f7ea3f802ba1386e35db21f025549e9")
        #expect(try store.key(for: "alice", realm: "r1") == .key("7f7ea3f802ba1386e35db21f025549e9"))
        #expect(try store.key(for: "alice", realm: "r2") == nil)
        #expect(try store.key(for: "bob", realm: "r1") == nil)
        // Another connection's write is seen by the next query.
        try SQLiteStore(path: path).setUser("bob", realm: "r1", key: "00112233445566778899aabbccddeeff")
        #expect(try store.key(for: "bob", realm: "r1") == .key("00112233445566778899aabbccddeeff"))
    }

    @Test func changeMarkerMovesWhenAnotherConnectionWrites() throws {
        let path = temporaryDatabase()
        defer { unlink(path) }
        let reader = try SQLiteStore(path: path)
        let writer = try SQLiteStore(path: path)
        let before = try reader.changeMarker()
        #expect(try reader.changeMarker() == before)
        try writer.setUser("carol", realm: "r", key: "00112233445566778899aabbccddeeff")
        #expect(try reader.changeMarker() != before)
    }

    @Test func unopenableFileIsAnErrorWithTheCause() {
        #expect(throws: StoreError.self) { try SQLiteStore(path: "/nonexistent-dir/x/turndb") }
    }
}

@Suite("uturnadmin command line")
struct AdminCommandTests {
    @Test func coturnSpellingsParse() throws {
        let a = try AdminCommand(arguments: ["-a", "-b", "/tmp/x.db", "-u", "u1", "-r", "r1", "-p", "p1"])
        #expect(a.action == .add)
        #expect(a.location == .sqlite(path: "/tmp/x.db"))
        #expect(a.user == "u1" && a.realm == "r1" && a.password == "p1")
        let s = try AdminCommand(arguments: ["--set-secret=abc", "--redis-userdb=ip=127.0.0.1 port=7000 dbname=2", "-r", "r"])
        #expect(s.action == .setSecret("abc"))
        var redis = RedisAddress()
        redis.port = 7000
        redis.database = 2
        #expect(s.location == .redis(redis))
        #expect(try AdminCommand(arguments: ["-X", "abc", "-r", "r"]).action == .deleteSecret("abc"))
        #expect(try AdminCommand(arguments: ["-S"]).action == .showSecrets)
    }

    @Test func missingOrUnknownPartsAreErrors() {
        #expect(throws: StoreError.self) { try AdminCommand(arguments: ["-a", "-u", "u1", "-r", "r1"]) }
        #expect(throws: StoreError.self) { try AdminCommand(arguments: ["-q"]) }
        #expect(throws: StoreError.self) { try AdminCommand(arguments: ["-a", "-d", "-u", "u", "-r", "r", "-p", "p"]) }
        #expect(throws: StoreError.self) { try AdminCommand(arguments: ["-l", "-M", "host=x"]) }
        #expect(throws: StoreError.self) { try AdminCommand(arguments: ["-l", "-N", "ip=1 port=notanumber"]) }
    }

    @Test func keyMatchesCoturnsForm() throws {
        // coturn's turnadmin -k -u u1 -r r1 -p p1 prints this MD5 key.
        let k = try AdminCommand(arguments: ["-k", "-u", "u1", "-r", "r1", "-p", "p1"])
        #expect(try k.run() == ["0x7f7ea3f802ba1386e35db21f025549e9"])
    }

    @Test func addListDeleteAgainstSQLite() throws {
        let path = temporaryDatabase()
        defer { unlink(path) }
        _ = try AdminCommand(arguments: ["-a", "-b", path, "-u", "u1", "-r", "r1", "-p", "p1"]).run()
        _ = try AdminCommand(arguments: ["-s", "sec", "-b", path, "-r", "r1"]).run()
        #expect(try AdminCommand(arguments: ["-l", "-b", path]).run() == ["u1[r1]"])
        #expect(try AdminCommand(arguments: ["-S", "-b", path]).run() == ["sec[r1]"])
        #expect(try SQLiteStore(path: path).snapshot(realm: "r1").users == ["u1": .key("7f7ea3f802ba1386e35db21f025549e9")])
        _ = try AdminCommand(arguments: ["-d", "-b", path, "-u", "u1", "-r", "r1"]).run()
        #expect(try AdminCommand(arguments: ["-l", "-b", path]).run() == [])
        // turnadmin's behaviour: deleting a missing user succeeds.
        #expect(try AdminCommand(arguments: ["-d", "-b", path, "-u", "u1", "-r", "r1"]).run() == [])
        _ = try AdminCommand(arguments: ["-g", "--user-quota", "10", "--total-quota=100", "-b", path, "-r", "r1"]).run()
        #expect(try AdminCommand(arguments: ["-G", "-b", path]).run() == ["total-quota[r1]=100", "user-quota[r1]=10"])
        _ = try AdminCommand(arguments: ["--add-denied-peer=10.0.0.0/8", "-b", path, "-r", "r1"]).run()
        _ = try AdminCommand(arguments: ["--add-allowed-peer", "10.1.0.0/16", "-b", path, "-r", "r1"]).run()
        #expect(try AdminCommand(arguments: ["--list-peers", "-b", path, "-r", "r1"]).run() == ["allow 10.1.0.0/16", "deny 10.0.0.0/8"])
        _ = try AdminCommand(arguments: ["--delete-denied-peer=10.0.0.0/8", "-b", path, "-r", "r1"]).run()
        #expect(try AdminCommand(arguments: ["--list-peers", "-b", path, "-r", "r1"]).run() == ["allow 10.1.0.0/16"])
    }
}
