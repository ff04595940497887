import Relay
import STUN
import TURN
import Testing
import UturndCore

/// coturn's service switches: parsing, checks, the summary and reloads.
@Suite("STUN and TURN service flags")
struct ServiceSettingsTests {
    @Test func defaultsServeBothWithSoftwareAndRFCLifetimes() throws {
        let s = try settings(["--user", "a:b"])
        #expect(!s.turn.stunOnly && s.turn.answersBinding && !s.turn.authenticatesBinding && s.turn.udpRelay)
        #expect(!s.turn.checkOriginConsistency && s.turn.software == "uturn" && s.serverName == nil)
        #expect(s.turn.limits.permissionLifetime == 300 && s.turn.limits.channelLifetime == 600)
        #expect(!s.engine.listen.isEmpty)
        #expect(s.summary.contains(
            "service: Binding for anyone, TURN allocations: UDP and TCP, SOFTWARE \"uturn\"; permissions last 300 s, channels 600 s"))
        #expect(s.warnings.isEmpty)
    }

    @Test func eachSwitchSetsItsField() throws {
        let s = try settings([
            "--user", "a:b", "--secure-stun", "--no-udp-relay", "--no-software-attribute", "--check-origin-consistency",
            "--server-name", "turn.example", "--permission-lifetime", "30", "--channel-lifetime", "60",
        ])
        #expect(s.turn.authenticatesBinding && !s.turn.udpRelay && s.turn.software == nil && s.turn.checkOriginConsistency)
        #expect(s.serverName == "turn.example" && s.turn.credentials.realm == "uturn")
        #expect(s.turn.limits.permissionLifetime == 30 && s.turn.limits.channelLifetime == 60)
        #expect(s.warnings.contains { $0.contains("for testing only") })
        let line = try #require(s.summary.first { $0.hasPrefix("service:") })
        #expect(line.contains("--secure-stun") && line.contains("TURN allocations: TCP,") && line.contains("no SOFTWARE"))
        #expect(line.contains("ORIGIN consistency checked") && line.contains("server name \"turn.example\""))
    }

    @Test func stunOnlyAndNoSTUN() throws {
        let a = try settings(["--user", "a:b", "-S"])
        #expect(a.turn.stunOnly && a.summary.contains { $0.contains("TURN requests ignored (--stun-only)") })
        let b = try settings(["--user", "a:b", "--no-stun"])
        #expect(!b.turn.answersBinding && b.summary.contains { $0.contains("Binding not answered (--no-stun)") })
    }

    @Test func noUDPKeepsTCPAndTLSOnly() throws {
        let s = try settings(["--user", "a:b", "--no-udp", "--listening-port", "4000"])
        #expect(s.engine.listen.isEmpty && s.engine.tcpListen == [TransportAddress("127.0.0.1:4000")!])
        #expect(!s.summary.contains { $0.hasPrefix("listening on udp") })
        #expect(s.engine.problem() == nil)
    }

    @Test func noUDPRelayWithoutTCPRelayingWarns() throws {
        let s = try settings(["--user", "a:b", "--no-udp-relay", "--no-tcp-relay"])
        #expect(s.warnings.contains { $0.contains("every Allocate gets 442") })
    }

    @Test(arguments: [
        (["--stun-only", "--no-stun"], "--stun-only and --no-stun together"),
        (["--no-udp", "--no-tcp"], "--no-udp leaves no listener"),
        (["--permission-lifetime", "0"], "--permission-lifetime 0 must be 1...300"),
        (["--permission-lifetime", "301"], "--permission-lifetime 301 must be 1...300"),
        (["--channel-lifetime", "601"], "--channel-lifetime 601 must be 1...600"),
        (["--server-name", ""], "--server-name must not be empty"),
    ])
    func validationMessages(arguments: [String], expected: String) {
        let message = problem(["--user", "a:b"] + arguments)
        #expect(message?.contains(expected) == true, "\(message ?? "no error")")
    }

    @Test func coturnConfigFileKeysAreRead() throws {
        let launch = try LaunchArguments.assemble(commandLine: ["-c", "/t.conf"]) { path throws(ConfigFileError) in
            try ConfigFile(
                path: path,
                text: """
                    user=a:b
                    no-udp-relay
                    stun-only
                    secure-stun
                    no-software-attribute
                    check-origin-consistency
                    server-name=turn.example
                    permission-lifetime=10
                    channel-lifetime=20
                    """)
        }
        #expect(launch.warnings.isEmpty)
        let s = try Settings(try Uturnd.parse(launch.arguments + ["--check-config"]), onlineCPUs: 4)
        #expect(s.turn.stunOnly && s.turn.authenticatesBinding && !s.turn.udpRelay && s.turn.software == nil)
        #expect(s.turn.checkOriginConsistency && s.serverName == "turn.example")
        #expect(s.turn.limits.permissionLifetime == 10 && s.turn.limits.channelLifetime == 20)
    }

    @Test func serviceSwitchesReloadLifetimesAndNoUDPNeedARestart() throws {
        let fixture = try ReloadFixture(file: "user=alice:pw\n")
        let outcome = try #require(
            fixture.reload(
                to: """
                    user=alice:pw
                    stun-only
                    secure-stun
                    no-udp-relay
                    no-software-attribute
                    check-origin-consistency
                    server-name=turn.example
                    no-udp
                    permission-lifetime=30
                    """
            ).outcome)
        let t = outcome.settings.turn
        #expect(t.stunOnly && t.authenticatesBinding && !t.udpRelay && t.software == nil && t.checkOriginConsistency)
        #expect(outcome.settings.serverName == "turn.example")
        for phrase in [
            "--stun-only on", "--secure-stun on", "--no-udp-relay on", "--no-software-attribute on",
            "--check-origin-consistency on", "--server-name turn.example",
        ] {
            #expect(outcome.changes.contains(phrase), "\(outcome.changes)")
        }
        // Fixed at start: the listeners and the workers' table lifetimes.
        #expect(!outcome.settings.engine.listen.isEmpty && t.limits.permissionLifetime == 300)
        #expect(outcome.restartNeeded.contains { $0.hasPrefix("--no-udp changed") })
        #expect(outcome.restartNeeded.contains { $0.hasPrefix("--permission-lifetime changed") })
        #expect(!outcome.restartNeeded.contains { $0.hasPrefix("--listening-port") })
    }
}
