import Foundation
import Relay
import STUN
import Testing
import UturndCore

/// --no-tcp, --cert/--pkey/--tls-listening-port and the connection limits.
@Suite("TCP and TLS flags")
struct StreamSettingsTests {
    /// A fresh self-signed certificate and key in a temporary directory.
    static func certificate() throws -> (cert: String, key: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("uturn-tls-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let cert = dir.appendingPathComponent("cert.pem").path
        let key = dir.appendingPathComponent("key.pem").path
        try TLSServerContext.writeSelfSignedCertificate(certificateFile: cert, privateKeyFile: key, commonName: "localhost")
        return (cert, key)
    }

    @Test func tcpByDefaultNoTLSWithoutACertificate() throws {
        let s = try settings(["--user", "a:b", "--listening-port", "4000"])
        #expect(s.engine.tcpListen == [TransportAddress("127.0.0.1:4000")!])
        #expect(s.engine.tlsListen.isEmpty && s.engine.tls == nil)
        #expect(s.summary.contains("listening on tcp 127.0.0.1:4000"))
        #expect(s.engine.streamConnections == 1024 && s.engine.streamConnectionsPerIP == 256)
    }

    @Test func noTCP() throws {
        #expect(try settings(["--user", "a:b", "--no-tcp"]).engine.tcpListen.isEmpty)
    }

    @Test func tlsOnEveryListeningAddress() throws {
        let (cert, key) = try Self.certificate()
        let s = try settings([
            "--user", "a:b", "--listening-ip", "127.0.0.1", "--listening-ip", "::1", "--cert", cert, "--pkey", key,
            "--tls-listening-port", "5400",
        ])
        #expect(s.engine.tlsListen == [TransportAddress("127.0.0.1:5400")!, TransportAddress("[::1]:5400")!])
        #expect(s.engine.tls?.certificateFile == cert)
        #expect(s.summary.contains { $0.hasPrefix("listening on tls [::1]:5400") })
    }

    @Test func noTLSWinsOverACertificate() throws {
        let (cert, key) = try Self.certificate()
        let s = try settings(["--user", "a:b", "--cert", cert, "--pkey", key, "--no-tls"])
        #expect(s.engine.tlsListen.isEmpty)
    }

    @Test func certificateProblemsAreNamed() throws {
        #expect(problem(["--user", "a:b", "--cert", "/x.pem"])?.contains("--cert is given without --pkey") == true)
        #expect(problem(["--user", "a:b", "--pkey", "/x.pem"])?.contains("--pkey is given without --cert") == true)
        let missing = problem(["--user", "a:b", "--cert", "/nonexistent/c.pem", "--pkey", "/nonexistent/k.pem"])
        #expect(missing?.contains("/nonexistent/c.pem") == true)
        let (cert, _) = try Self.certificate()
        let (_, otherKey) = try Self.certificate()
        let mismatch = problem(["--user", "a:b", "--cert", cert, "--pkey", otherKey])
        #expect(mismatch?.contains("private key") == true)
        let (c, k) = try Self.certificate()
        let clash = problem(["--user", "a:b", "--cert", c, "--pkey", k, "--listening-port", "5349"])
        #expect(clash?.contains("--tls-listening-port 5349 is also the TCP listening port") == true)
    }

    @Test func limitsAreChecked() {
        #expect(problem(["--user", "a:b", "--tcp-connections", "0"])?.contains("--tcp-connections 0") == true)
        #expect(problem(["--user", "a:b", "--tcp-send-queue", "100"])?.contains("--tcp-send-queue 100") == true)
        #expect(problem(["--user", "a:b", "--tls-handshake-timeout", "0"])?.contains("--tls-handshake-timeout 0") == true)
        #expect(problem(["--user", "a:b", "--tcp-connections-per-ip", "-1"])?.contains("--tcp-connections-per-ip") == true)
    }
}
