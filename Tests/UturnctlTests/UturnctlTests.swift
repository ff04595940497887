import Glibc
import NIOHTTP1
import Relay
import STUN
import TURN
import Testing
@testable import UturnctlCore
@testable import UturndCore

/// What uturnd writes, read back by uturnctl: the two ends of the admin API.
@Suite("uturnctl: JSON, tables, HTTP")
struct UturnctlTests {
    static func snapshot(user: String) -> AllocationSnapshot {
        var counters = TrafficCounters()
        counters.packetsToPeer = 12
        counters.bytesToPeer = 1200
        counters.packetsToClient = 7
        counters.bytesToClient = 3 * 1024 * 1024
        return AllocationSnapshot(
            id: AllocationID(slot: 5, generation: 2), username: user,
            fiveTuple: FiveTuple(
                client: TransportAddress("192.0.2.1:40000")!, server: TransportAddress("[2001:db8::1]:3478")!,
                transport: .tls),
            relayTransport: .udp, relayV4: TransportAddress("198.51.100.1:50000")!,
            relayV6: TransportAddress("[2001:db8::2]:50002")!, ageSeconds: 3725, expiresIn: 480,
            permissions: [.init(peer: IPAddress("203.0.113.9")!, expiresIn: 250)],
            channels: [.init(number: 0x4000, peer: TransportAddress("203.0.113.9:6000")!, expiresIn: 550)],
            counters: counters)
    }

    @Test("session JSON decodes field for field, odd usernames included", arguments: [
        "alice", "1700000000:bob", "quote\"back\\slash", "line\nbreak\u{1}", "ünï ☃",
    ])
    func sessionJSON(user: String) throws {
        let result = AdminResult(answers: [WorkerAnswer(worker: 3, sessions: [Self.snapshot(user: user)])], missing: [1])
        let text = AdminJSON.sessions(result, realm: "ex.org")
        let list = try decodeAdmin(SessionList.self, from: Array(text.utf8))
        #expect(list.workers_missing == [1])
        let s = try #require(list.sessions.first)
        #expect(s.id == "3.5.2" && s.worker == 3)
        #expect(s.user == user)
        #expect(s.realm == "ex.org")
        #expect(s.transport == "tls" && s.relay_transport == "udp")
        #expect(s.client == "192.0.2.1:40000" && s.server == "[2001:db8::1]:3478")
        #expect(s.relayed == ["198.51.100.1:50000", "[2001:db8::2]:50002"])
        #expect(s.permissions == [Session.Permission(peer: "203.0.113.9", expires_in: 250)])
        #expect(s.channels == [Session.Channel(number: 0x4000, peer: "203.0.113.9:6000", expires_in: 550)])
        #expect(s.age_seconds == 3725 && s.expires_in == 480)
        #expect(s.to_peer == Session.Traffic(packets: 12, bytes: 1200))
        #expect(s.to_client == Session.Traffic(packets: 7, bytes: 3 * 1024 * 1024))
        // A disconnect's answer has the same shape under "ended".
        let ended = AdminJSON.sessions(result, realm: "ex.org", key: "ended")
        #expect(try decodeAdmin(SessionList.self, from: Array(ended.utf8)).sessions == list.sessions)
    }

    @Test("info JSON decodes")
    func infoJSON() throws {
        let text = AdminJSON.info(
            .init(
                version: "0.1.0", backend: "epoll", workers: 4, uptimeSeconds: 90, draining: true, allocations: 17,
                realm: "r", config: ["workers: 4", "a \"quoted\" line"]))
        let info = try decodeAdmin(ServerInfo.self, from: Array(text.utf8))
        #expect(
            info
                == ServerInfo(
                    version: "0.1.0", backend: "epoll", workers: 4, uptime_seconds: 90, draining: true, allocations: 17,
                    realm: "r", config: ["workers: 4", "a \"quoted\" line"]))
    }

    @Test("the sessions table")
    func sessionsTable() throws {
        let result = AdminResult(answers: [WorkerAnswer(worker: 0, sessions: [Self.snapshot(user: "alice")])], missing: [])
        let list = try decodeAdmin(SessionList.self, from: Array(AdminJSON.sessions(result, realm: "r").utf8))
        let expected = """
            ID     USER   TRANSPORT  CLIENT           RELAYED                                 PEERS  CHANNELS    AGE  PKTS>PEER  BYTES>PEER  PKTS>CLIENT  BYTES>CLIENT
            0.5.2  alice  tls        192.0.2.1:40000  198.51.100.1:50000,[2001:db8::2]:50002      1         1  1h02m         12     1.2 KiB            7       3.0 MiB
            1 session

            """
        #expect(Tables.sessions(list) == expected)
        #expect(Tables.sessions(SessionList(sessions: [], workers_missing: [])) == "0 sessions\n")
        #expect(
            Tables.sessions(SessionList(sessions: [], workers_missing: [2, 3]))
                == "0 sessions\nwarning: workers 2, 3 did not answer in time; their sessions are not shown\n")
        #expect(Tables.ended(list, user: "alice") == "ended 1 session of alice: 0.5.2 (192.0.2.1:40000 tls)\n")
        #expect(Tables.ended(SessionList(sessions: [], workers_missing: []), user: "bob") == "no session of bob to end\n")
    }

    @Test("durations and byte counts", arguments: [
        (0, "0s"), (59, "59s"), (65, "1m05s"), (3600, "1h00m"), (3725, "1h02m"), (90000, "1d01h"),
    ])
    func durations(seconds: Int, text: String) { #expect(Tables.duration(seconds) == text) }

    @Test func byteUnits() {
        #expect(Tables.bytes(0) == "0 B")
        #expect(Tables.bytes(1023) == "1023 B")
        #expect(Tables.bytes(1536) == "1.5 KiB")
        #expect(Tables.bytes(5 * 1024 * 1024 * 1024) == "5.0 GiB")
    }

    @Test("the info text")
    func infoText() {
        let info = ServerInfo(
            version: "0.1.0", backend: "io_uring", workers: 2, uptime_seconds: 65, draining: false, allocations: 3,
            realm: "ex.org", config: ["workers: 2"])
        #expect(
            Tables.info(info) == """
                version      0.1.0
                backend      io_uring
                workers      2
                uptime       1m05s
                state        relaying
                allocations  3
                realm        ex.org
                configuration:
                  workers: 2

                """)
    }

    @Test("URLs: host, IPv6, port; https and junk refused")
    func urls() throws {
        let a = try AdminClient(url: "http://127.0.0.1:9642", token: "t")
        #expect(a.host == "127.0.0.1" && a.port == 9642)
        let b = try AdminClient(url: "http://[::1]:7000/", token: "t")
        #expect(b.host == "::1" && b.port == 7000)
        let c = try AdminClient(url: "http://localhost", token: "t")
        #expect(c.host == "localhost" && c.port == 9642)
        let d = try AdminClient(url: "https://admin.example.org:9000", token: "t")
        #expect(d.tls && d.host == "admin.example.org" && d.port == 9000)
        #expect(!a.tls)
        #expect(throws: AdminClientError.self) { try AdminClient(url: "ftp://127.0.0.1:9642", token: "t") }
        #expect(throws: AdminClientError.self) { try AdminClient(url: "127.0.0.1:9642", token: "t") }
        #expect(throws: AdminClientError.self) { try AdminClient(url: "http://127.0.0.1:0", token: "t") }
        #expect(throws: AdminClientError.self) { try AdminClient(url: "http://127.0.0.1:x", token: "t") }
    }

    @Test("HTTP answers: status and body (Content-Length honoured); junk refused")
    func responses() throws {
        let r = try AdminClient.parse(Array("HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}xx".utf8))
        #expect(r.status == 401 && r.text == "{}")
        #expect(throws: AdminClientError.self) { try AdminClient.parse(Array("HTTP/1.1 200 OK\r\n".utf8)) }
        // Shorter than its Content-Length: cut short, not taken as whole.
        #expect(throws: AdminClientError.self) {
            try AdminClient.parse(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}".utf8))
        }
        #expect(throws: AdminClientError.self) { try AdminClient.parse(Array("SSH-2.0\r\n\r\n".utf8)) }
    }

    @Test("a username uturnctl encodes is the one uturnd decodes", arguments: [
        "alice", "1700000000:bob", "a b+c&d=e", "ünï/☃?#%",
    ])
    func queryEncoding(user: String) {
        let token = AdminToken(text: "t")!
        let uri = "/v1/sessions?user=\(Uturnctl.encode(user))"
        #expect(AdminAction.route(method: .GET, uri: uri, authorization: "Bearer t", token: token) == .sessions(user: user))
        #expect(
            AdminAction.route(method: .DELETE, uri: uri, authorization: "Bearer t", token: token) == .disconnectUser(user))
    }

    @Test("the token comes from --token-file, else the environment; none is an error")
    func tokens() throws {
        let path = tokenFileForTest("abc\n")
        let none = try ConnectionOptions.parse([])
        #expect(try ConnectionOptions.parse(["--token-file", path]).client(environment: [:]).token == "abc")
        #expect(try none.client(environment: ["UTURN_ADMIN_TOKEN_FILE": path]).token == "abc")
        #expect(try none.client(environment: ["UTURN_ADMIN_TOKEN": "xyz"]).token == "xyz")
        let env = ["UTURN_ADMIN_URL": "http://[::1]:7001", "UTURN_ADMIN_TOKEN": "xyz"]
        #expect(try none.client(environment: env).port == 7001)
        #expect(try ConnectionOptions.parse(["--url", "http://h:7002"]).client(environment: env).port == 7002)
        let secure = try ConnectionOptions.parse(["--url", "https://h", "--cacert", "/ca.pem"]).client(environment: env)
        #expect(secure.tls && secure.caFile == "/ca.pem" && !secure.insecure)
        #expect(throws: (any Error).self) { try none.client(environment: [:]) }
        let empty = try ConnectionOptions.parse(["--token-file", tokenFileForTest("\n")])
        #expect(throws: (any Error).self) { try empty.client(environment: [:]) }
    }
}

func tokenFileForTest(_ text: String) -> String {
    var template = Array("/tmp/uturnctl-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    let path = dir + "/token"
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
    return path
}
