import Glibc
import NIOHTTP1
import Relay
import Synchronization
import STUN
import TURN
import Testing
@testable import UturndCore

/// A file in a fresh temporary directory holding `text` (mode 0600).
func tokenFile(_ text: String, mode: mode_t = 0o600) -> String {
    var template = Array("/tmp/uturn-admin-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    let path = dir + "/token"
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
    chmod(path, mode)
    return path
}

@Suite("Admin API: token, routes, settings")
struct AdminTests {
    let token = AdminToken(text: "correct-horse\n")!

    @Test("the token is trimmed; an empty or blank one is refused")
    func tokenText() {
        #expect(token.matches(Array("correct-horse".utf8)))
        #expect(AdminToken(text: "  \n\t") == nil)
        #expect(AdminToken(text: "") == nil)
        #expect(AdminToken(text: " a b ")!.matches(Array("a b".utf8)))
    }

    @Test("matching: same bytes only, whatever the length of the guess")
    func tokenMatching() {
        #expect(!token.matches(Array("correct-hors".utf8)))
        #expect(!token.matches(Array("correct-horsee".utf8)))
        #expect(!token.matches(Array("Correct-horse".utf8)))
        #expect(!token.matches([UInt8]()))
        #expect(token.authorizes(header: "Bearer correct-horse"))
        #expect(token.authorizes(header: "bearer correct-horse"))
        #expect(!token.authorizes(header: "Basic correct-horse"))
        #expect(!token.authorizes(header: "Bearer wrong"))
        #expect(!token.authorizes(header: "Bearer "))
        #expect(!token.authorizes(header: "correct-horse"))
        #expect(!token.authorizes(header: nil))
    }

    @Test("the token file: read and trimmed; missing or empty is an error naming the file")
    func tokenFiles() throws {
        let path = tokenFile("s3cret\n")
        #expect(try AdminToken.load(path: path).matches(Array("s3cret".utf8)))
        #expect(throws: AdminTokenError.self) { try AdminToken.load(path: tokenFile("\n")) }
        do {
            _ = try AdminToken.load(path: "/nonexistent/uturn-token")
            Issue.record("a missing file loaded")
        } catch {
            #expect(error.description.contains("/nonexistent/uturn-token"))
        }
    }

    @Test("every path needs the token: 401 without it or with another", arguments: [
        (HTTPMethod.GET, "/v1/info"), (.GET, "/v1/sessions"), (.DELETE, "/v1/sessions?user=a"),
        (.DELETE, "/v1/sessions/0.1.2"), (.POST, "/v1/drain"), (.POST, "/v1/reload"), (.GET, "/nope"),
    ])
    func unauthorized(method: HTTPMethod, uri: String) {
        for header in [nil, "Bearer nope", "Bearer correct-horse2", "Basic Y29ycmVjdC1ob3JzZQ=="] {
            guard case .reply(let status, _) = AdminAction.route(method: method, uri: uri, authorization: header, token: token)
            else {
                Issue.record("\(method) \(uri) with \(header ?? "no header") was not refused")
                continue
            }
            #expect(status == .unauthorized)
        }
    }

    func route(_ method: HTTPMethod, _ uri: String) -> AdminAction {
        AdminAction.route(method: method, uri: uri, authorization: "Bearer correct-horse", token: token)
    }

    @Test("routes with the token")
    func routes() {
        #expect(route(.GET, "/v1/info") == .info)
        #expect(route(.GET, "/v1/sessions") == .sessions(user: nil))
        #expect(route(.GET, "/v1/sessions?user=alice") == .sessions(user: "alice"))
        #expect(route(.GET, "/v1/sessions?user=1700000000%3Aal%20ice%2B") == .sessions(user: "1700000000:al ice+"))
        #expect(route(.DELETE, "/v1/sessions?user=bob") == .disconnectUser("bob"))
        #expect(route(.DELETE, "/v1/sessions/1.7.3") == .disconnectSession(worker: 1, AllocationID(slot: 7, generation: 3)))
        #expect(route(.POST, "/v1/drain") == .drain)
        #expect(route(.POST, "/v1/reload") == .reload)
    }

    @Test("wrong method 405, unknown path 404, missing user, bad id or bad query 400")
    func refusals() {
        func status(_ a: AdminAction) -> HTTPResponseStatus? {
            if case .reply(let s, _) = a { return s }
            return nil
        }
        #expect(status(route(.POST, "/v1/info")) == .methodNotAllowed)
        #expect(status(route(.GET, "/v1/drain")) == .methodNotAllowed)
        #expect(status(route(.PUT, "/v1/sessions")) == .methodNotAllowed)
        #expect(status(route(.GET, "/v1/sessions/0.1.2")) == .methodNotAllowed)
        #expect(status(route(.GET, "/metrics")) == .notFound)
        #expect(status(route(.DELETE, "/v1/sessions")) == .badRequest)
        #expect(status(route(.DELETE, "/v1/sessions?user=")) == .badRequest)
        #expect(status(route(.DELETE, "/v1/sessions/1.2")) == .badRequest)
        #expect(status(route(.DELETE, "/v1/sessions/a.b.c")) == .badRequest)
        // An undecodable filter is refused, never read as "no filter".
        #expect(status(route(.GET, "/v1/sessions?user=%zz")) == .badRequest)
        #expect(status(route(.DELETE, "/v1/sessions?user=%C3")) == .badRequest)
    }

    @Test("the admin API is off by default and needs a readable, non-empty token file")
    func settingsChecks() throws {
        let off = try settings(["--user", "a:b"])
        #expect(off.adminListen == nil && off.adminToken == nil)
        #expect(!off.summary.contains { $0.contains("admin") })
        let path = tokenFile("tok\n")
        let on = try settings(["--user", "a:b", "--admin-listen", "127.0.0.1:9642", "--admin-token-file", path])
        #expect(on.adminListen == TransportAddress("127.0.0.1:9642"))
        #expect(on.adminToken?.matches(Array("tok".utf8)) == true)
        #expect(on.summary.contains("admin API: http://127.0.0.1:9642/v1/ (bearer token)"))
        #expect(on.warnings.isEmpty)
        #expect(problem(["--user", "a:b", "--admin-listen", "127.0.0.1:9642"])?.contains("--admin-token-file") == true)
        #expect(
            problem(["--user", "a:b", "--admin-listen", "127.0.0.1:9642", "--admin-token-file", tokenFile("")])?
                .contains("empty") == true)
        #expect(
            problem(["--user", "a:b", "--admin-listen", "127.0.0.1:9642", "--admin-token-file", "/nonexistent/t"])?
                .contains("cannot read") == true)
        #expect(problem(["--user", "a:b", "--admin-listen", "127.0.0.1", "--admin-token-file", path]) != nil)
        let open = try settings([
            "--user", "a:b", "--admin-listen", "127.0.0.1:9642", "--admin-token-file", tokenFile("t", mode: 0o644),
        ])
        #expect(open.warnings.contains { $0.contains("chmod 600") })
        let wide = try settings(["--user", "a:b", "--admin-listen", "0.0.0.0:9642", "--admin-token-file", path])
        #expect(wide.warnings.contains { $0.contains("in clear") })
    }

    @Test("HTTPS: --admin-cert and --admin-pkey together, loaded at start")
    func settingsTLS() throws {
        var template = Array("/tmp/uturn-admin-tls-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        try TLSServerContext.writeSelfSignedCertificate(
            certificateFile: dir + "/cert.pem", privateKeyFile: dir + "/key.pem", commonName: "127.0.0.1")
        let token = tokenFile("tok")
        let base = ["--user", "a:b", "--admin-listen", "0.0.0.0:9642", "--admin-token-file", token]
        let on = try settings(base + ["--admin-cert", dir + "/cert.pem", "--admin-pkey", dir + "/key.pem"])
        #expect(on.adminTLS?.certificateFile == dir + "/cert.pem")
        #expect(on.summary.contains { $0.hasPrefix("admin API: https://0.0.0.0:9642/v1/") })
        #expect(!on.warnings.contains { $0.contains("in clear") })
        #expect(problem(base + ["--admin-cert", dir + "/cert.pem"])?.contains("go together") == true)
        #expect(problem(base + ["--admin-cert", dir + "/none.pem", "--admin-pkey", dir + "/key.pem"]) != nil)
        #expect(try settings(base).adminTLS == nil)
    }
}

@Suite("Admin API: reload")
struct AdminReloadTests {
    @Test("SIGHUP re-reads the token file; an emptied file keeps the running token")
    func tokenRotation() throws {
        let path = tokenFile("first\n")
        let file = "user=a:b\nadmin-listen=127.0.0.1:9642\nadmin-token-file=\(path)\n"
        let fixture = try ReloadFixture(file: file)
        #expect(fixture.settings.adminToken?.matches(Array("first".utf8)) == true)
        #expect(fixture.reload(to: file).outcome?.changes.contains("admin API token replaced") == false)

        let f = fopen(path, "w")!
        fputs("second\n", f)
        fclose(f)
        let rotated = try #require(fixture.reload(to: file).outcome)
        #expect(rotated.settings.adminToken?.matches(Array("second".utf8)) == true)
        #expect(rotated.changes.contains("admin API token replaced"))
        #expect(rotated.restartNeeded.isEmpty)

        let g = fopen(path, "w")!
        fclose(g)
        #expect(fixture.reload(to: file).problem?.contains("empty") == true)

        let moved = file.replacingOccurrences(of: "9642", with: "9643")
        let h = fopen(path, "w")!
        fputs("third\n", h)
        fclose(h)
        let restart = try #require(fixture.reload(to: moved).outcome)
        #expect(restart.restartNeeded.contains { $0.hasPrefix("--admin-listen changed") })
        #expect(restart.settings.adminListen == TransportAddress("127.0.0.1:9642"))
    }
}

@Suite("Admin API: the service")
struct AdminServiceTests {
    final class Recorder: Sendable {
        let signals = Mutex<[Int32]>([])
        let answers = Mutex<[(HTTPResponseStatus, String)]>([])
        let thens = Mutex<[@Sendable () -> Void]>([])
        let timeouts = Mutex<[@Sendable () -> Void]>([])
    }

    /// A service over an engine that was made but never started: its
    /// workers never answer, so only the timeout completes a request.
    func service(_ r: Recorder) throws -> AdminService {
        let s = try settings(["--user", "a:b", "--workers", "2", "--realm", "ex.org"])
        let engine = try Engine(config: s.engine, turn: s.turn, log: { _, _ in })
        return AdminService(engine: engine, settings: s, token: AdminToken(text: "t")!) { sig in
            r.signals.withLock { $0.append(sig) }
        }
    }

    func perform(_ service: AdminService, _ action: AdminAction, _ r: Recorder) {
        service.perform(action, schedule: { _, task in r.timeouts.withLock { $0.append(task) } }, hop: { $0() }) {
            status, body, then in
            r.answers.withLock { $0.append((status, body)) }
            r.thens.withLock { $0.append(then) }
        }
    }

    @Test("drain and reload answer 202 first, and signal only once the answer is out")
    func signalsAfterTheAnswer() throws {
        let r = Recorder()
        let s = try service(r)
        perform(s, .drain, r)
        #expect(r.answers.withLock { $0.map(\.0) } == [.accepted])
        #expect(r.signals.withLock { $0 }.isEmpty)
        for then in r.thens.withLock({ $0 }) { then() }
        #expect(r.signals.withLock { $0 } == [SIGTERM])
        perform(s, .reload, r)
        for then in r.thens.withLock({ $0 }).dropFirst() { then() }
        #expect(r.signals.withLock { $0 } == [SIGTERM, SIGHUP])
    }

    @Test("workers that do not answer are named when the timeout fires; info needs no worker")
    func timeoutAndInfo() throws {
        let r = Recorder()
        let s = try service(r)
        perform(s, .sessions(user: nil), r)
        #expect(r.answers.withLock { $0 }.isEmpty)
        for task in r.timeouts.withLock({ $0 }) { task() }
        let answer = try #require(r.answers.withLock { $0 }.first)
        #expect(answer.0 == .ok)
        #expect(answer.1 == "{\"sessions\":[],\"workers_missing\":[0,1]}\n")
        perform(s, .info, r)
        let info = try #require(r.answers.withLock { $0 }.last)
        #expect(info.0 == .ok && info.1.contains("\"workers\":2") && info.1.contains("\"realm\":\"ex.org\""))
        perform(s, .disconnectSession(worker: 5, AllocationID(slot: 0, generation: 0)), r)
        #expect(r.answers.withLock { $0 }.last?.0 == .notFound)
    }
}
