import ArgumentParser
import Relay
import STUN
import TURN
import Testing
import UturndCore

func settings(_ arguments: [String]) throws -> Settings {
    try Settings(Uturnd.parse(arguments + ["--check-config"]), onlineCPUs: 4)
}

/// The message a bad command line produces (via `validate()`).
func problem(_ arguments: [String]) -> String? {
    do {
        _ = try Uturnd.parse(arguments)
        return nil
    } catch {
        return Uturnd.message(for: error)
    }
}

@Suite("Flags to configuration")
struct SettingsTests {
    @Test func defaults() throws {
        let s = try settings(["--user", "demo:demo-password"])
        #expect(s.engine.listen == [TransportAddress("127.0.0.1:3478")!])
        #expect(s.engine.relayIPv4 == IPAddress("127.0.0.1"))
        #expect(s.engine.relayIPv6 == nil)
        #expect(s.engine.minPort == 49152 && s.engine.maxPort == 65535)
        #expect(s.engine.workers == 4)
        #expect(s.engine.gso && !s.engine.singleShotReceive)
        #expect(s.turn.credentials.realm == "uturn")
        #expect(s.turn.nonces.lifetime == 600)
        #expect(s.turn.maxLifetime == 3600)
        #expect(s.turn.relayFamilies == [.v4])
        #expect(!s.turn.peerPolicy.allowLoopbackPeers)
        #expect(s.turn.peerPolicy.serverAddresses == [IPAddress("127.0.0.1")!, IPAddress("127.0.0.1")!])
        #expect(s.hasDemoUser)
        #expect(s.logLevel == .info && s.logDestination == .standardError)
    }

    @Test func listeningRelayAndPorts() throws {
        let s = try settings([
            "--user", "a:b", "-L", "192.0.2.1", "--listening-ip", "2001:db8::1", "-p", "3479",
            "--relay-ip", "192.0.2.10", "-E", "2001:db8::10", "--external-ip", "203.0.113.5/192.0.2.10",
            "--min-port", "50000", "--max-port", "50099",
        ])
        #expect(s.engine.listen.map(\.description) == ["192.0.2.1:3479", "[2001:db8::1]:3479"])
        #expect(s.engine.relayIPv4 == IPAddress("192.0.2.10"))
        #expect(s.engine.relayIPv6 == IPAddress("2001:db8::10"))
        #expect(s.engine.externalIPv4 == IPAddress("203.0.113.5"))
        #expect(s.engine.minPort == 50000 && s.engine.maxPort == 50099)
        #expect(s.turn.relayFamilies == [.v4, .v6])
        #expect(s.turn.peerPolicy.serverAddresses.contains(IPAddress("203.0.113.5")!))
        // The server's own addresses are peers only on relay ports.
        #expect(s.turn.peerPolicy.relayPorts == 50000...50099)
        #expect(s.turn.peerPolicy.denial(forPeer: TransportAddress("192.0.2.10:3479")!) == .serverAddress)
        #expect(s.turn.peerPolicy.denial(forPeer: TransportAddress("203.0.113.5:22")!) == .serverAddress)
        #expect(s.turn.peerPolicy.denial(forPeer: TransportAddress("192.0.2.10:50000")!) == nil)
    }

    @Test func usersAndKeys() throws {
        let key = String(repeating: "ab", count: 16)
        let s = try settings(["--user", "alice:secret", "-u", "bob:0x\(key)", "--realm", "example.org"])
        #expect(s.userNames == ["alice", "bob"])
        #expect(!s.hasDemoUser)
        #expect(s.turn.credentials.realm == "example.org")
        #expect(s.turn.credentials.rest == nil)
    }

    @Test func restSecrets() throws {
        let s = try settings([
            "--use-auth-secret", "--static-auth-secret", "new-secret-0123456789", "--static-auth-secret",
            "old-secret-0123456789",
        ])
        let rest = try #require(s.turn.credentials.rest)
        #expect(rest.secrets == [Array("new-secret-0123456789".utf8), Array("old-secret-0123456789".utf8)])
        #expect(s.userNames.isEmpty)
        #expect(s.warnings.isEmpty)
        let short = try settings(["--use-auth-secret", "--static-auth-secret", "short"])
        #expect(short.warnings.contains { $0.contains("shorter than 16") })
    }

    @Test func peerBlocks() throws {
        let s = try settings([
            "--user", "a:b", "--denied-peer-ip", "10.0.0.0/8", "--denied-peer-ip", "192.0.2.7",
            "--allowed-peer-ip", "10.1.0.0-10.1.255.255", "--allowed-peer-ip", "fc00::/7", "--allow-loopback-peers",
        ])
        let p = s.turn.peerPolicy
        #expect(p.denied == [CIDR("10.0.0.0/8")!, CIDR("192.0.2.7/32")!])
        #expect(p.allowed == [CIDR("10.1.0.0/16")!, CIDR("fc00::/7")!])
        #expect(p.allowLoopbackPeers)
        #expect(s.warnings.contains { $0.contains("FOR TESTING ONLY") })
        #expect(p.isAllowed(IPAddress("10.1.2.3")!))
        #expect(!p.isAllowed(IPAddress("10.2.0.1")!))
    }

    @Test func coturnRangesBecomeExactBlocks() {
        #expect(parseAddressBlocks("10.0.0.0-10.255.255.255") == [CIDR("10.0.0.0/8")!])
        #expect(parseAddressBlocks("192.0.2.1-192.0.2.6")
            == ["192.0.2.1/32", "192.0.2.2/31", "192.0.2.4/31", "192.0.2.6/32"].map { CIDR($0)! })
        #expect(parseAddressBlocks("0.0.0.0-255.255.255.255") == [CIDR("0.0.0.0/0")!])
        #expect(parseAddressBlocks("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == [CIDR("::/0")!])
        #expect(parseAddressBlocks("10.0.0.9-10.0.0.1") == nil)
        #expect(parseAddressBlocks("10.0.0.1-::1") == nil)
        #expect(parseAddressBlocks("10.0.0.0/33") == nil)
        #expect(parseAddressBlocks("example.com") == nil)
    }

    @Test func limitsLoggingAndEngine() throws {
        let s = try settings([
            "--user", "a:b", "--user-quota", "5", "-Q", "100", "--max-allocate-lifetime", "300", "--stale-nonce",
            "120", "--strict-channel-numbers", "--drain-timeout", "30", "--log-file", "/tmp/uturnd.log",
            "--log-level", "warning", "--workers", "3", "--pin-workers", "--sq-entries", "256", "--cq-entries",
            "1024", "--buffers", "1024", "--buffer-size", "4096", "--send-ops", "64", "--max-batch", "32",
            "--no-multishot", "--no-defer-taskrun", "--no-single-issuer", "--no-gso",
            "--simulate-io-uring-failure",
        ])
        #expect(s.userQuota == 5 && s.totalQuota == 100)
        #expect(s.turn.maxLifetime == 300 && s.turn.defaultLifetime == 300)
        #expect(s.turn.nonces.lifetime == 120)
        #expect(s.turn.strictChannelNumbers)
        #expect(s.drainSeconds == 30)
        #expect(s.logDestination == .file("/tmp/uturnd.log") && s.logLevel == .warning)
        let e = s.engine
        #expect(e.workers == 3 && e.pinWorkers)
        #expect(e.sqEntries == 256 && e.cqEntries == 1024 && e.buffers == 1024 && e.bufferSize == 4096)
        #expect(e.sendOperations == 64 && e.maxBatch == 32)
        #expect(e.singleShotReceive && e.noDeferTaskrun && e.noSingleIssuer && !e.gso && !e.groPeer)
        #expect(e.simulateRingFailure)
    }

    @Test func receiveSideGRO() throws {
        let e = try settings(["--user", "a:b", "--gro-client", "--gro-peer", "--gro-buffers", "64"]).engine
        #expect(e.groClient && e.groPeer && e.groBuffers == 64)
        #expect(e.problem() == nil)
        #expect(throws: (any Error).self) { try settings(["--user", "a:b", "--gro-peer", "--no-multishot"]) }
    }

    @Test(arguments: [
        (["--user", "a:b", "--min-port", "60000", "--max-port", "50000"], "--min-port 60000 is above --max-port 50000."),
        (["--user", "a:b", "--max-port", "70000"], "--max-port 70000 must be 1...65535."),
        (["--user", "a:b", "--denied-peer-ip", "10.0.0/8"], "--denied-peer-ip '10.0.0/8': expected an address"),
        (["--user", "a:b", "--allowed-peer-ip", "10.0.0.0/40"], "--allowed-peer-ip '10.0.0.0/40': expected"),
        (["--user", "alice"], "--user 'alice': expected name:password"),
        (["--user", ":pw"], "--user ':…': expected name:password"),
        (["--user", "alice:"], "--user 'alice:…': expected name:password"),
        (["--user", "bob:0x1234"], "--user bob: a key after 0x must be 32 hex digits"),
        (["--user", "a:b", "--user", "a:c"], "--user a is given twice."),
        ([], "no credentials"),
        (["--use-auth-secret"], "--use-auth-secret needs at least one --static-auth-secret"),
        (["--static-auth-secret", "s"], "--static-auth-secret is given without --use-auth-secret"),
        (["--user", "a:b", "--listening-ip", "localhost"], "--listening-ip 'localhost' is not an IPv4 or IPv6 address."),
        (["--user", "a:b", "--listening-ip", "0.0.0.0"], "--listening-ip 0.0.0.0 listens on every address"),
        (["--user", "a:b", "--relay-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"], "--relay-ip 127.0.0.1 is given twice."),
        (["--user", "a:b", "--relay-ip", "127.0.0.1", "--relay-ip", "127.0.0.2", "--external-ip", "203.0.113.5"],
         "--external-ip maps one IPv4 relay address"),
        (["--user", "a:b", "--external-ip", "2001:db8::1"], "only an IPv4 external address"),
        (["--user", "a:b", "--external-ip", "203.0.113.5/10.0.0.1"], "the private address must be the IPv4 relay address"),
        (["--user", "a:b", "--log-file", "syslog"], "--log-file syslog is not supported"),
        (["--user", "a:b", "--stale-nonce", "0"], "--stale-nonce 0 must be"),
        (["--user", "a:b", "--sq-entries", "1000"], "--sq-entries 1000 must be a power of two"),
        (["--user", "a:b", "--min-port", "50000", "--max-port", "50001", "--workers", "4"], "fewer than --workers 4"),
    ])
    func validationMessages(arguments: [String], expected: String) {
        let message = problem(arguments)
        #expect(message?.contains(expected) == true, "got: \(message ?? "no error")")
    }

    @Test func checkConfigDefersValidationToItsOwnReport() throws {
        // With --check-config, validate() lets the command through; start() reports (exit 1).
        let command = try Uturnd.parse(["--check-config", "--min-port", "2", "--max-port", "1"])
        #expect(command.checkConfig)
        #expect(throws: ValidationError.self) { try Settings(command) }
    }

    @Test func summaryNamesAddressesButNoPasswords() throws {
        let s = try settings(["--user", "demo:demo-password", "--relay-ip", "127.0.0.1"])
        #expect(s.summary.contains("listening on udp 127.0.0.1:3478"))
        #expect(s.summary.contains("relaying from 127.0.0.1, ports 49152-65535"))
        #expect(!s.summary.joined().contains("demo-password"))
    }
}
