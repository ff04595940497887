import Testing
import UturndCore

@Suite("Config file")
struct ConfigFileTests {
    @Test func commentsBlankLinesAndValueSpellings() throws {
        let file = try ConfigFile(
            path: "t.conf",
            text: """
                # a comment
                   # an indented comment

                listening-port=3479
                realm = example.org   # trailing comment
                min-port 50000
                max-port\t60000
                user="alice:pa#ss"
                """)
        #expect(
            file.arguments == [
                "--listening-port=3479", "--realm=example.org", "--min-port=50000", "--max-port=60000",
                "--user=alice:pa#ss",
            ])
        #expect(file.ignored.isEmpty)
    }

    @Test func bareBooleansAndExplicitValues() throws {
        let file = try ConfigFile(
            path: "t.conf", text: "lt-cred-mech\nno-tls=true\nno-dtls = false\n--pin-workers\nno-gso=1\n")
        #expect(file.arguments == ["--lt-cred-mech", "--no-tls", "--pin-workers", "--no-gso"])
    }

    @Test func repeatedKeysAccumulate() throws {
        let file = try ConfigFile(path: "t.conf", text: "user=a:1\nuser=b:2\ndenied-peer-ip=10.0.0.0/8\n")
        #expect(file.arguments == ["--user=a:1", "--user=b:2", "--denied-peer-ip=10.0.0.0/8"])
        #expect(file.entries.map(\.line) == [1, 2, 3])
    }

    @Test func bareStaleNonceMeansDefault() throws {
        #expect(try ConfigFile(path: "t.conf", text: "stale-nonce").arguments == ["--stale-nonce=600"])
    }

    @Test func unsupportedCoturnKeysAreReportedAndSkipped() throws {
        let file = try ConfigFile(
            path: "/etc/turnserver.conf", text: "fingerprint\ncipher-list=DEFAULT\nrealm=x\nno-cli\n")
        #expect(file.arguments == ["--realm=x"])
        #expect(file.ignored.count == 3)
        #expect(file.ignored[0].hasPrefix("/etc/turnserver.conf:1: ignored: option 'fingerprint' is not supported by uturn"))
        #expect(file.ignored[1].contains(":2: ignored: option 'cipher-list'"))
        #expect(file.ignored[1].contains("TLS"))
    }

    @Test func unknownKeyIsAnErrorWithItsLine() {
        #expect(throws: ConfigFileError(path: "t.conf", line: 3, message: "unknown option 'listen-port'")) {
            try ConfigFile(path: "t.conf", text: "# c\nrealm=x\nlisten-port=1\n")
        }
    }

    @Test func valueProblemsNameTheLine() {
        #expect(throws: ConfigFileError(path: "t.conf", line: 2, message: "'realm' needs a value")) {
            try ConfigFile(path: "t.conf", text: "no-tls\nrealm\n")
        }
        #expect(throws: ConfigFileError.self) { try ConfigFile(path: "t.conf", text: "no-tls=maybe") }
        #expect(throws: ConfigFileError.self) { try ConfigFile(path: "t.conf", text: "config=/etc/other.conf") }
    }

    @Test func commandLineOverridesTheFile() throws {
        let file = try ConfigFile(
            path: "t.conf", text: "listening-port=4000\nuser=a:1\nuser=b:2\nrealm=file\nallow-loopback-peers\n")
        let launch = try LaunchArguments.assemble(
            commandLine: ["-c", "t.conf", "--user", "c:3", "-p", "5000"], load: { _ in file })
        // The file's realm and flag stay; its port and whole user list give way.
        #expect(launch.arguments == ["--realm=file", "--allow-loopback-peers", "-c", "t.conf", "--user", "c:3", "-p", "5000"])
        let command = try Uturnd.parse(launch.arguments)
        let settings = try Settings(command)
        #expect(settings.userNames == ["c"])
        #expect(settings.engine.listen.map(\.port) == [5000])
        #expect(settings.turn.credentials.realm == "file")
        #expect(settings.turn.peerPolicy.allowLoopbackPeers)
    }

    @Test func errorsAboutFileOptionsNameTheFileAndLine() throws {
        let file = try ConfigFile(path: "t.conf", text: "user=a:1\n# note\nstale-nonce=-3\n")
        let launch = try LaunchArguments.assemble(commandLine: ["-c", "t.conf", "--realm", "r"], load: { _ in file })
        #expect(launch.located("--stale-nonce -3 must be 1...604800 seconds.")
            == "t.conf:3: --stale-nonce -3 must be 1...604800 seconds.")
        // Options from the command line, and messages naming none, stay as they are.
        #expect(launch.located("--realm is bad") == "--realm is bad")
        #expect(launch.located("no option here") == "no option here")
    }

    @Test func missingFileIsAnError() {
        #expect(throws: ConfigFileError.self) {
            try LaunchArguments.assemble(commandLine: ["--config=/nonexistent/uturn.conf", "--user", "a:b"])
        }
    }

    @Test func unsupportedCoturnFlagOnTheCommandLineIsNamed() {
        do {
            _ = try LaunchArguments.assemble(commandLine: ["--user", "a:b", "--pkey-pwd", "x"])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("--pkey-pwd is a coturn option that uturn does not support"))
        }
    }

    @Test func unknownFlagOnTheCommandLineIsNamed() {
        do {
            _ = try LaunchArguments.assemble(commandLine: ["--user", "a:b", "--listen-port", "1"])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("unknown option '--listen-port'"))
        }
    }

    /// The config file's table and the parser's declarations must agree.
    @Test(arguments: OptionTable.kinds.keys.sorted())
    func everyTableEntryParses(name: String) throws {
        let sample: [String: String] = [
            "listening-ip": "127.0.0.2", "relay-ip": "127.0.0.1", "external-ip": "203.0.113.5",
            "log-level": "debug", "allowed-peer-ip": "10.0.0.1", "denied-peer-ip": "10.0.0.0/8",
            "realm": "r", "user": "x:y", "static-auth-secret": "s", "rest-api-separator": ":", "log-file": "stderr",
        ]
        var args = ["--user=a:b"]
        switch OptionTable.kinds[name]! {
        case .flag: args.append("--\(name)")
        case .value, .list: args.append("--\(name)=\(sample[name] ?? "1")")
        }
        // Parse without validation: only the name and value syntax matter here.
        _ = try Uturnd.parseAsRoot(args + ["--check-config"])
    }
}
