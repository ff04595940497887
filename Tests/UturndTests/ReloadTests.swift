import ArgumentParser
import STUN
import TURN
import Testing
import UturndCore

/// The SIGHUP decision without an engine: start-up settings from a command
/// line and a config file's text, then a reload against another text.
struct ReloadFixture {
    static let path = "/etc/uturn/test.conf"
    let commandLine: [String]
    let settings: Settings
    let options: Uturnd

    init(file: String, commandLine: [String] = ["-c", ReloadFixture.path, "--listening-port", "40000"]) throws {
        let text = file
        let launch = try LaunchArguments.assemble(commandLine: commandLine) { path throws(ConfigFileError) in
            try ConfigFile(path: path, text: text)
        }
        let options = try #require(try Uturnd.parseAsRoot(launch.arguments) as? Uturnd)
        self.commandLine = commandLine
        self.options = options
        self.settings = try Settings(options, onlineCPUs: 4)
    }

    /// Reloads with the file now holding `file` (nil: the file is gone).
    func reload(to file: String?) -> Reloader.Result {
        let reloader = Reloader(commandLine: commandLine, onlineCPUs: 4) { path throws(ConfigFileError) in
            guard let file else { throw ConfigFileError(path: path, line: 0, message: "cannot open: No such file or directory") }
            return try ConfigFile(path: path, text: file)
        }
        return reloader.reload(current: settings, currentOptions: options)
    }
}

extension Reloader.Result {
    var outcome: Reloader.Outcome? {
        if case .apply(let o) = self { return o }
        return nil
    }
    var problem: String? {
        if case .keep(let p) = self { return p }
        return nil
    }
}

/// A nonce written by `a` for one client, checked by `b`.
func nonceCarriesOver(_ a: NonceCodec, _ b: NonceCodec) -> Bool {
    let client = TransportAddress("192.0.2.1:5000")!
    let now = MonotonicTime.seconds(1000)
    var buffer = [UInt8](repeating: 0, count: NonceCodec.maxLength)
    let n = buffer.withUnsafeMutableBytes { a.encode(into: $0, client: client, features: [], now: now) }
    return buffer.withUnsafeBytes { raw in
        b.check(UnsafeRawBufferPointer(rebasing: raw[0..<n]), client: client, now: now.adding(seconds: 1))
    } == .valid([])
}

@Suite("SIGHUP reload decision")
struct ReloadTests {
    static let aliceFile = """
        realm=example.org
        user=alice:alice-pw
        allowed-peer-ip=10.1.0.0/16
        workers=2
        """

    @Test func goodFileGivesNewConfiguration() throws {
        let f = try ReloadFixture(file: Self.aliceFile)
        #expect(f.settings.userNames == ["alice"])
        let bobFile = """
            realm=example.org
            user=bob:bob-pw    # alice is gone
            allowed-peer-ip=10.1.0.0/16
            denied-peer-ip=203.0.113.0/24
            stale-nonce=300
            workers=2
            """
        let o = try #require(f.reload(to: bobFile).outcome)
        #expect(o.settings.userNames == ["bob"])
        #expect(o.restartNeeded.isEmpty)
        #expect(o.configPath == ReloadFixture.path)
        #expect(o.changes.contains("static users 1 → 1 (+bob, -alice)"))
        #expect(o.changes.contains("peer policy 1 allow / 0 deny blocks → 1 allow / 1 deny"))
        #expect(o.changes.contains("--stale-nonce 600 → 300 s"))
        #expect(o.summary.hasPrefix("SIGHUP: configuration reloaded from /etc/uturn/test.conf and the command line: "))
        #expect(!o.summary.contains("bob-pw") && !o.summary.contains("alice-pw"))
        // The TURN configuration the workers get.
        let turn = o.settings.turn
        #expect(turn.nonces.lifetime == 300)
        #expect(turn.peerPolicy.denial(for: IPAddress("203.0.113.7")!) != nil)
        #expect(turn.peerPolicy.serverAddresses == f.settings.turn.peerPolicy.serverAddresses)
        // The same nonce secret: nonces handed out before the reload stay valid.
        #expect(nonceCarriesOver(f.settings.turn.nonces, turn.nonces))
        // And a fresh build would not have that property (the check is meaningful).
        let fresh = try Settings(o.options, onlineCPUs: 4)
        #expect(!nonceCarriesOver(f.settings.turn.nonces, fresh.turn.nonces))
        // The engine part is the running one.
        #expect(o.settings.engine.listen == f.settings.engine.listen)
        #expect(o.settings.engine.workers == 2)
    }

    @Test func passwordChangeAndSecretsReported() throws {
        let f = try ReloadFixture(file: Self.aliceFile + "\nuse-auth-secret\nstatic-auth-secret=first-secret-0123456")
        let o = try #require(
            f.reload(
                to: Self.aliceFile.replacingAlice("alice:new-pw")
                    + "\nuse-auth-secret\nstatic-auth-secret=first-secret-0123456\nstatic-auth-secret=second-secret-012345\ndrain-timeout=30"
            ).outcome)
        #expect(o.changes.contains("static users 1 → 1 (new password for alice)"))
        #expect(o.changes.contains("REST API secrets 1 → 2 (1 kept)"))
        #expect(o.changes.contains("--drain-timeout 0 → 30 s"))
        #expect(o.settings.drainSeconds == 30)
        #expect(o.settings.turn.credentials.rest?.secrets.count == 2)
    }

    @Test func unchangedFileSaysNoChanges() throws {
        let f = try ReloadFixture(file: Self.aliceFile)
        let o = try #require(f.reload(to: Self.aliceFile).outcome)
        #expect(o.changes.isEmpty && o.restartNeeded.isEmpty)
        #expect(o.summary.hasSuffix(": no changes"))
    }

    @Test(arguments: [
        ("realm=example.org\nuser=bob", "--user 'bob': expected name:password"),
        ("realm=example.org\nuser=bob:x\nbogus-option=1", "/etc/uturn/test.conf:3: unknown option 'bogus-option'"),
        ("realm=example.org\nallowed-peer-ip=10.1.0.0/99\nuser=bob:x", "--allowed-peer-ip '10.1.0.0/99'"),
        ("realm=example.org", "no credentials"),
        ("user=bob:x\nworkers=many", "workers"),
    ])
    func brokenFileKeepsRunningSettings(file: String, expected: String) throws {
        let f = try ReloadFixture(file: Self.aliceFile)
        let problem = try #require(f.reload(to: file).problem)
        #expect(problem.contains(expected), "\(problem)")
    }

    @Test func missingFileKeepsRunningSettings() throws {
        let f = try ReloadFixture(file: Self.aliceFile)
        let problem = try #require(f.reload(to: nil).problem)
        #expect(problem == "/etc/uturn/test.conf: cannot open: No such file or directory")
    }

    @Test func restartOnlyChangesAreWarnedNotApplied() throws {
        let f = try ReloadFixture(file: Self.aliceFile)
        let file = Self.aliceFile.replacingOccurrencesOfWorkers("workers=3")
            + "\nmin-port=50000\nsq-entries=2048\nuser-quota=5\nlistening-ip=127.0.0.2\nlistening-ip=127.0.0.1\nlog-level=debug\nuser=carol:c"
            + "\nmetrics-listen=127.0.0.1:9641"
        let o = try #require(f.reload(to: file).outcome)
        #expect(o.restartNeeded.contains("--workers changed in the config file: restart to apply (running 2, now 3)"))
        let flags = o.restartNeeded.map { String($0.prefix { $0 != " " }) }
        // (The relay address follows the first listening address when --relay-ip is not given;
        // two listening addresses of a family turn RFC 5780 on, which also needs a restart.)
        #expect(flags == ["--listening-ip", "--relay-ip", "--min-port", "--workers", "--sq-entries", "--no-rfc5780/--alt-listening-port", "--metrics-listen", "--log-level"])
        // Not applied: the running engine and log stay.
        #expect(o.settings.engine.workers == 2 && o.settings.engine.minPort == 49152)
        #expect(o.settings.engine.sqEntries == 1024 && o.settings.logLevel == .info)
        // The reloadable part still is, the quota included (for the next Allocate).
        #expect(o.settings.userNames == ["alice", "carol"])
        #expect(o.settings.userQuota == 5)
        #expect(o.changes == ["static users 1 → 2 (+carol)", "--user-quota 0 → 5"])
    }

    @Test func trafficLimitValuesReloadButTurningOneOnOrOffNeedsARestart() throws {
        let f = try ReloadFixture(file: Self.aliceFile + "\nmax-bps=1000")
        let raised = try #require(f.reload(to: Self.aliceFile + "\nmax-bps=2000\nmax-pps=500").outcome)
        #expect(raised.restartNeeded.isEmpty)
        #expect(raised.changes.contains("--max-bps 1000 → 2000"))
        #expect(raised.changes.contains("--max-pps 0 → 500"))
        #expect(raised.settings.turn.rateLimits.maxBytesPerSecond == 2000)
        // Without max-bps no limit is left on: that waits for a restart.
        let off = try #require(f.reload(to: Self.aliceFile).outcome)
        #expect(off.restartNeeded.contains { $0.hasPrefix("--max-bps changed in the config file: restart to apply (running 1000, now 0") })
        #expect(off.settings.turn.rateLimits.maxBytesPerSecond == 1000)
        #expect(!off.changes.contains { $0.hasPrefix("--max-bps") })
    }

    @Test func commandLineStillOverridesTheFile() throws {
        // --listening-port is on the command line: a file line for it changes nothing.
        let f = try ReloadFixture(file: Self.aliceFile)
        let o = try #require(f.reload(to: Self.aliceFile + "\nlistening-port=40001").outcome)
        #expect(o.restartNeeded.isEmpty)
        #expect(o.settings.engine.listen.first?.port == 40000)
    }

    @Test func withoutConfigFileReloadIsANoOp() throws {
        let f = try ReloadFixture(file: "", commandLine: ["--user", "a:b", "--workers", "1"])
        let o = try #require(f.reload(to: nil).outcome)
        #expect(o.changes.isEmpty && o.configPath == nil)
        #expect(o.summary.contains("no -c file"))
    }
}

extension String {
    fileprivate func replacingAlice(_ entry: String) -> String {
        split(separator: "\n").map { $0.hasPrefix("user=alice:") ? "user=\(entry)" : String($0) }.joined(separator: "\n")
    }
    fileprivate func replacingOccurrencesOfWorkers(_ line: String) -> String {
        split(separator: "\n").map { $0.hasPrefix("workers=") ? line : String($0) }.joined(separator: "\n")
    }
}
