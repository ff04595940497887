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
