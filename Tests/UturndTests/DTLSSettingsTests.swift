import Relay
import STUN
import Testing
import UturndCore

/// --dtls-listening-port and --no-dtls with --cert/--pkey.
@Suite("DTLS flags")
struct DTLSSettingsTests {
    @Test func dtlsOnTheTLSPortNumberByDefault() throws {
        let (cert, key) = try StreamSettingsTests.certificate()
        let s = try settings([
            "--user", "a:b", "--listening-ip", "127.0.0.1", "--listening-ip", "::1", "--cert", cert, "--pkey", key,
            "--tls-listening-port", "5400",
        ])
        #expect(s.engine.dtlsListen == [TransportAddress("127.0.0.1:5400")!, TransportAddress("[::1]:5400")!])
        #expect(s.engine.dtls?.certificateFile == cert)
        #expect(s.summary.contains { $0.hasPrefix("listening on dtls [::1]:5400") })
    }

    @Test func dtlsListeningPortMovesIt() throws {
        let (cert, key) = try StreamSettingsTests.certificate()
        let s = try settings(["--user", "a:b", "--cert", cert, "--pkey", key, "--dtls-listening-port", "5500"])
        #expect(s.engine.dtlsListen == [TransportAddress("127.0.0.1:5500")!])
        #expect(s.engine.tlsListen == [TransportAddress("127.0.0.1:5349")!])
    }

    @Test func noDTLSAndNoCertificateMeanNoListener() throws {
        let (cert, key) = try StreamSettingsTests.certificate()
        let off = try settings(["--user", "a:b", "--cert", cert, "--pkey", key, "--no-dtls"])
        #expect(off.engine.dtlsListen.isEmpty && off.engine.dtls == nil)
        #expect(!off.engine.tlsListen.isEmpty)
        let none = try settings(["--user", "a:b", "--dtls-listening-port", "5500"])
        #expect(none.engine.dtlsListen.isEmpty)
        #expect(none.notices.contains { $0.contains("no DTLS listener without --cert and --pkey") })
    }

    @Test func dtlsOnTheUDPListeningPortIsRefused() throws {
        let (cert, key) = try StreamSettingsTests.certificate()
        let clash = problem([
            "--user", "a:b", "--cert", cert, "--pkey", key, "--listening-port", "4000", "--dtls-listening-port", "4000",
            "--no-tcp",
        ])
        #expect(clash?.contains("cannot be both a UDP and a DTLS listener") == true)
        // With no UDP listener the port is free for DTLS.
        let s = try settings([
            "--user", "a:b", "--cert", cert, "--pkey", key, "--listening-port", "4000", "--dtls-listening-port", "4000",
            "--no-udp",
        ])
        #expect(s.engine.dtlsListen == [TransportAddress("127.0.0.1:4000")!])
    }

    @Test func aBadPortIsNamed() throws {
        let (cert, key) = try StreamSettingsTests.certificate()
        let bad = problem(["--user", "a:b", "--cert", cert, "--pkey", key, "--dtls-listening-port", "70000"])
        #expect(bad?.contains("--dtls-listening-port") == true)
    }
}

/// --no-rfc5780 and --alt-listening-port.
@Suite("RFC 5780 flags")
struct NATDiscoverySettingsTests {
    @Test func onWithTwoAddressesOfAFamily() throws {
        let s = try settings([
            "--user", "a:b", "--listening-ip", "127.0.0.1", "--listening-ip", "127.0.0.2", "--listening-port", "4000",
        ])
        #expect(s.turn.natDiscovery.isEnabled)
        #expect(s.turn.natDiscovery.alternatePort == 4001)
        #expect(Set(s.engine.listen.map(\.description)) == ["127.0.0.1:4000", "127.0.0.2:4000", "127.0.0.1:4001", "127.0.0.2:4001"])
        // TCP stays on the listening port only.
        #expect(Set(s.engine.tcpListen.map(\.description)) == ["127.0.0.1:4000", "127.0.0.2:4000"])
        #expect(s.summary.contains { $0.hasPrefix("RFC 5780 NAT behaviour discovery: 127.0.0.1 and 127.0.0.2") })
    }

    @Test func altListeningPortAndOff() throws {
        let base = ["--user", "a:b", "--listening-ip", "127.0.0.1", "--listening-ip", "127.0.0.2", "--listening-port", "4000"]
        let alt = try settings(base + ["--alt-listening-port", "5000"])
        #expect(alt.turn.natDiscovery.alternatePort == 5000)
        #expect(alt.engine.listen.contains(TransportAddress("127.0.0.2:5000")!))
        let off = try settings(base + ["--no-rfc5780"])
        #expect(!off.turn.natDiscovery.isEnabled && off.engine.listen.count == 2)
        let single = try settings(["--user", "a:b", "--listening-port", "4000", "--alt-listening-port", "5000"])
        #expect(!single.turn.natDiscovery.isEnabled && single.engine.listen.count == 1)
        #expect(single.notices.contains { $0.contains("RFC 5780 needs two listening addresses") })
        #expect(problem(base + ["--alt-listening-port", "4000"])?.contains("is the listening port") == true)
        let noUDP = try settings(base + ["--no-udp"])
        #expect(!noUDP.turn.natDiscovery.isEnabled && noUDP.engine.listen.isEmpty)
    }
}
