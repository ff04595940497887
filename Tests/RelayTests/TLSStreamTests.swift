import Foundation
import Relay
import Testing

/// A server certificate and key written to a temporary directory for one test.
final class TemporaryCertificate {
    let directory: URL
    let certificateFile: String
    let privateKeyFile: String

    init(commonName: String = "localhost") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("uturn-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        certificateFile = directory.appendingPathComponent("cert.pem").path
        privateKeyFile = directory.appendingPathComponent("key.pem").path
        try TLSServerContext.writeSelfSignedCertificate(
            certificateFile: certificateFile, privateKeyFile: privateKeyFile, commonName: commonName)
    }

    func serverContext() throws -> TLSServerContext {
        try TLSServerContext(certificateFile: certificateFile, privateKeyFile: privateKeyFile)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}

/// One side of an in-memory connection: its stream, ciphertext received but
/// not yet fed, plaintext still to write, and what it has read.
final class Endpoint {
    var stream: TLSStream
    var inbox: [UInt8] = []
    var outbox: [UInt8] = []
    var received: [UInt8] = []
    var closed = false
    var failure: TLSError?
    /// writePlaintext calls that took fewer bytes than offered.
    var partialWrites = 0
    /// readPlaintext results that asked for output to be drained first.
    var wantWrites = 0

    init(_ stream: TLSStream) { self.stream = stream }
    deinit { stream.free() }

    /// Feeds what fits, reads until OpenSSL wants more, writes what it takes.
    /// Returns true when ciphertext must leave before this side can go on.
    func step() throws -> Bool {
        if !inbox.isEmpty {
            let fed = inbox.withUnsafeBytes { stream.feedCiphertext($0) }
            inbox.removeFirst(fed)
        }
        var mustDrain = false
        var plain = [UInt8](repeating: 0, count: 16384)
        reading: while !closed && failure == nil {
            switch plain.withUnsafeMutableBytes({ stream.readPlaintext(into: $0) }) {
            case .bytes(let n): received += plain[0..<n]
            case .wantMore: break reading
            case .wantWrite:
                wantWrites += 1
                mustDrain = true
                break reading
            case .closed: closed = true
            case .failed(let error): failure = error
            }
        }
        while !outbox.isEmpty && failure == nil {
            let taken = try outbox.withUnsafeBytes { try stream.writePlaintext($0) }
            if taken < outbox.count { partialWrites += 1 }
            if taken == 0 {
                mustDrain = mustDrain || stream.isHandshakeComplete
                break
            }
            outbox.removeFirst(taken)
        }
        return mustDrain
    }

    /// Moves this side's pending ciphertext, in small pieces, to `peer`'s inbox.
    @discardableResult
    func send(to peer: Endpoint) -> Int {
        var moved = 0
        var chunk = [UInt8](repeating: 0, count: 1500)
        while true {
            let n = chunk.withUnsafeMutableBytes { stream.takeCiphertext(into: $0) }
            if n == 0 { return moved }
            peer.inbox += chunk[0..<n]
            moved += n
        }
    }
}

/// Runs both sides until `done` holds or nothing moves; the round count is bounded.
@discardableResult
func pump(_ a: Endpoint, _ b: Endpoint, rounds: Int = 500, until done: () -> Bool) throws -> Int {
    for round in 0..<rounds {
        if done() { return round }
        let aBusy = try a.step()
        let bBusy = try b.step()
        let moved = a.send(to: b) + b.send(to: a)
        if moved == 0 && !aBusy && !bBusy && a.inbox.isEmpty && b.inbox.isEmpty && !done() {
            return round
        }
    }
    return rounds
}

func connected(
    _ certificate: TemporaryCertificate, client clientContext: TLSClientContext, bufferSize: Int = 17 * 1024
) throws -> (server: Endpoint, client: Endpoint) {
    let server = Endpoint(try TLSStream(server: certificate.serverContext(), bufferSize: bufferSize))
    let client = Endpoint(try TLSStream(client: clientContext, bufferSize: bufferSize))
    try pump(client, server) { server.stream.isHandshakeComplete && client.stream.isHandshakeComplete }
    return (server, client)
}

@Suite("TLS over memory BIOs")
struct TLSStreamTests {
    @Test("handshake and data both ways, including 40 KiB messages", arguments: [TLSVersion.tls12, .tls13])
    func handshakeAndData(version: TLSVersion) throws {
        let certificate = try TemporaryCertificate()
        let (server, client) = try connected(certificate, client: TLSClientContext(maxVersion: version))
        let expected = version == .tls12 ? "TLSv1.2" : "TLSv1.3"
        #expect(server.stream.isHandshakeComplete && client.stream.isHandshakeComplete)
        #expect(server.failure == nil && client.failure == nil)
        #expect(server.stream.protocolVersion == expected && client.stream.protocolVersion == expected)
        #expect(server.stream.negotiatedALPN == "stun.turn" && client.stream.negotiatedALPN == "stun.turn")

        let big = (0..<40 * 1024).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let hello = Array("hello".utf8)
        client.outbox = hello + big
        server.outbox = big + hello
        try pump(client, server) {
            server.received.count == hello.count + big.count && client.received.count == big.count + hello.count
        }
        #expect(server.received == hello + big)
        #expect(client.received == big + hello)
        // 40 KiB is more than one record: the writes were partial.
        #expect(client.partialWrites >= 2 && server.partialWrites >= 2)
        #expect(server.failure == nil && client.failure == nil)
    }

    @Test("small BIO buffers: partial feeds and stalled output still deliver everything")
    func smallBuffers() throws {
        let certificate = try TemporaryCertificate()
        let (server, client) = try connected(
            certificate, client: TLSClientContext(), bufferSize: TLSStream.minimumBufferSize)
        #expect(server.stream.isHandshakeComplete && client.stream.isHandshakeComplete)
        let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 8)) }
        client.outbox = big
        server.outbox = big
        try pump(client, server, rounds: 5000) { server.received.count == big.count && client.received.count == big.count }
        #expect(server.received == big && client.received == big)
        #expect(server.stream.ciphertextRoom <= TLSStream.minimumBufferSize)
    }

    @Test("a handshake flight larger than the BIO buffer: .wantWrite, drain, go on", arguments: [TLSVersion.tls12, .tls13])
    func flightLargerThanBuffer(version: TLSVersion) throws {
        let certificate = try TemporaryCertificate()
        // The leaf followed by copies of itself: OpenSSL sends extra chain
        // certificates as given, so the server's flight grows past 4 KiB.
        let pem = try String(contentsOfFile: certificate.certificateFile, encoding: .utf8)
        let chainFile = certificate.directory.appendingPathComponent("chain.pem").path
        try String(repeating: pem, count: 16).write(toFile: chainFile, atomically: true, encoding: .utf8)
        let context = try TLSServerContext(certificateFile: chainFile, privateKeyFile: certificate.privateKeyFile)
        let server = Endpoint(try TLSStream(server: context, bufferSize: TLSStream.minimumBufferSize))
        let client = Endpoint(try TLSStream(client: TLSClientContext(maxVersion: version)))
        try pump(client, server) { server.stream.isHandshakeComplete && client.stream.isHandshakeComplete }
        #expect(server.stream.isHandshakeComplete && client.stream.isHandshakeComplete)
        #expect(server.wantWrites > 0)
        #expect(server.failure == nil && client.failure == nil)
    }

    @Test("writing before the handshake completes takes nothing")
    func writeBeforeHandshake() throws {
        let certificate = try TemporaryCertificate()
        var server = try TLSStream(server: certificate.serverContext())
        var client = try TLSStream(client: TLSClientContext())
        defer {
            server.free()
            client.free()
        }
        let taken = try Array("early".utf8).withUnsafeBytes { try client.writePlaintext($0) }
        #expect(taken == 0)
        #expect(!client.isHandshakeComplete && !server.isHandshakeComplete)
        // The client's first read queues its ClientHello.
        var plain = [UInt8](repeating: 0, count: 64)
        let result = plain.withUnsafeMutableBytes { client.readPlaintext(into: $0) }
        guard case .wantMore = result else {
            Issue.record("expected .wantMore, got \(result)")
            return
        }
        #expect(client.pendingCiphertext > 0)
    }

    @Test("ALPN: stun.turn selected when offered; other or no ALPN handshakes without it", arguments: [
        (["stun.turn"], "stun.turn"), (["h2", "stun.turn"], "stun.turn"), (["h2"], nil), ([], nil),
    ] as [([String], String?)])
    func alpn(offered: [String], selected: String?) throws {
        let certificate = try TemporaryCertificate()
        let (server, client) = try connected(certificate, client: TLSClientContext(alpn: offered))
        #expect(server.failure == nil && client.failure == nil)
        #expect(server.stream.isHandshakeComplete && client.stream.isHandshakeComplete)
        #expect(server.stream.negotiatedALPN == selected && client.stream.negotiatedALPN == selected)
    }

    @Test("a key that does not match the certificate is refused at context init")
    func wrongKey() throws {
        let one = try TemporaryCertificate()
        let two = try TemporaryCertificate()
        do {
            _ = try TLSServerContext(certificateFile: one.certificateFile, privateKeyFile: two.privateKeyFile)
            Issue.record("a mismatched key was accepted")
        } catch {
            #expect(error.description.contains(two.privateKeyFile))
            #expect(error.description.contains("values mismatch"))
        }
    }

    @Test("missing files: the error names the file")
    func missingFiles() throws {
        let certificate = try TemporaryCertificate()
        let nowhere = certificate.directory.appendingPathComponent("absent.pem").path
        do {
            _ = try TLSServerContext(certificateFile: nowhere, privateKeyFile: certificate.privateKeyFile)
            Issue.record("a missing certificate was accepted")
        } catch {
            #expect(error.description.contains("certificate chain from \(nowhere)"))
        }
        do {
            _ = try TLSServerContext(certificateFile: certificate.certificateFile, privateKeyFile: nowhere)
            Issue.record("a missing key was accepted")
        } catch {
            #expect(error.description.contains("private key from \(nowhere)"))
        }
    }

    @Test("the self-signed key file is private to its owner")
    func selfSignedFiles() throws {
        let certificate = try TemporaryCertificate(commonName: "127.0.0.1")
        let keyMode = try FileManager.default.attributesOfItem(atPath: certificate.privateKeyFile)[.posixPermissions]
        #expect(keyMode as? Int == 0o600)
        let pem = try String(contentsOfFile: certificate.certificateFile, encoding: .utf8)
        #expect(pem.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(throws: TLSError.self) {
            try TLSServerContext.writeSelfSignedCertificate(
                certificateFile: certificate.certificateFile, privateKeyFile: certificate.privateKeyFile,
                commonName: "x", validDays: 0)
        }
    }

    @Test("garbage ciphertext makes the server fail, never crash", arguments: [
        Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
        [UInt8](repeating: 0xFF, count: 64),
        [0x16, 0x03, 0x01, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 64),  // handshake record too long
        [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 0, count: 12),  // plain STUN
    ])
    func garbage(prefix: [UInt8]) throws {
        let certificate = try TemporaryCertificate()
        var server = try TLSStream(server: certificate.serverContext())
        defer { server.free() }
        var generator = SystemRandomNumberGenerator()
        var plain = [UInt8](repeating: 0, count: 1024)
        var stream = prefix
        var outcome: TLSStream.ReadResult = .wantMore
        for _ in 0..<200 {
            _ = stream.withUnsafeBytes { server.feedCiphertext($0) }
            outcome = plain.withUnsafeMutableBytes { server.readPlaintext(into: $0) }
            if case .wantMore = outcome {
                stream = (0..<512).map { _ in UInt8.random(in: 0...255, using: &generator) }
                continue
            }
            break
        }
        guard case .failed(let error) = outcome else {
            Issue.record("expected .failed, got \(outcome)")
            return
        }
        #expect(error.description.contains("handshake"))
        // Still safe to call after the failure, and it stays failed.
        guard case .failed = plain.withUnsafeMutableBytes({ server.readPlaintext(into: $0) }) else {
            Issue.record("a failed stream recovered")
            return
        }
        #expect(throws: TLSError.self) { try Array("x".utf8).withUnsafeBytes { try server.writePlaintext($0) } }
        #expect(server.hasFailedFatally && !server.isHandshakeComplete)
    }

    @Test("a record corrupted after the handshake fails the connection for reading and writing")
    func corruptedRecord() throws {
        let certificate = try TemporaryCertificate()
        let (server, client) = try connected(certificate, client: TLSClientContext())
        try pump(client, server) { client.inbox.isEmpty && server.inbox.isEmpty }  // TLS 1.3 session tickets
        client.outbox = Array("hello".utf8)
        _ = try client.step()
        client.send(to: server)
        server.inbox[server.inbox.count - 3] ^= 0x01  // inside the AEAD tag
        _ = try server.step()
        #expect(server.failure != nil && server.received.isEmpty)
        #expect(server.stream.hasFailedFatally && !server.stream.isHandshakeComplete)
        #expect(throws: TLSError.self) { try Array("x".utf8).withUnsafeBytes { try server.stream.writePlaintext($0) } }
        // The server queued an alert; the client, reading it, fails too.
        server.send(to: client)
        _ = try client.step()
        #expect(client.failure != nil)
    }

    @Test("close_notify reads as .closed; data sent before it arrives first", arguments: [TLSVersion.tls12, .tls13])
    func closeNotify(version: TLSVersion) throws {
        let certificate = try TemporaryCertificate()
        let (server, client) = try connected(certificate, client: TLSClientContext(maxVersion: version))
        client.outbox = Array("bye".utf8)
        _ = try client.step()
        client.stream.sendCloseNotify()
        client.send(to: server)
        try pump(client, server) { server.closed }
        #expect(server.received == Array("bye".utf8))
        #expect(server.closed && server.failure == nil)
        // The server answers; the client sees its close_notify too.
        server.stream.sendCloseNotify()
        server.send(to: client)
        _ = try client.step()
        #expect(client.closed && client.failure == nil)
    }

    @Test("free is idempotent")
    func freeTwice() throws {
        var stream = try TLSStream(client: TLSClientContext())
        stream.free()
        stream.free()
        #expect(stream.isFreed)
    }
}
