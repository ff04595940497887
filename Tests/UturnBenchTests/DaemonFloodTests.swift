import Foundation
import Testing
import URing

@testable import BenchCore

#if canImport(Glibc)
import Glibc
#endif

/// uturnd from the same build: $UTURND, else next to the test bundle
/// (the build's products directory) or one level up.
func findUturnd() -> String? {
    if let env = ProcessInfo.processInfo.environment["UTURND"], !env.isEmpty {
        return FileManager.default.isExecutableFile(atPath: env) ? env : nil
    }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("uturnd").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return nil
}

/// A free UDP port on 127.0.0.1 (bound, read back, closed).
func freeUDPPort() throws -> UInt16 {
    let s = try UDPSocket.bound(to: .loopbackV4(port: 0))
    defer { s.close() }
    return try s.localAddress().port
}

/// A range of `count` ports on 127.0.0.1 that are all free right now.
func freePortRange(count: UInt16) throws -> ClosedRange<UInt16> {
    for _ in 0..<50 {
        let base = UInt16.random(in: 20000...(60000 - count))
        var ok = true
        for p in base..<(base + count) {
            guard let s = try? UDPSocket.bound(to: .loopbackV4(port: p)) else {
                ok = false
                break
            }
            s.close()
        }
        if ok { return base...(base + count - 1) }
    }
    throw TURNError("no free port range")
}

/// A uturnd child process on 127.0.0.1 (free ports, one worker, UDP only),
/// stopped by its PID with SIGTERM (SIGKILL after 5 s).
final class UturndChild {
    let process = Process()
    let port: UInt16
    var pid: Int32 { process.processIdentifier }

    /// `extra`: more uturnd flags.
    init(binary: String, extra: [String] = []) throws {
        port = try freeUDPPort()
        let relay = try freePortRange(count: 64)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--listening-ip", "127.0.0.1", "--listening-port", "\(port)", "--relay-ip", "127.0.0.1",
            "--min-port", "\(relay.lowerBound)", "--max-port", "\(relay.upperBound)",
            "--allow-loopback-peers", "--user", "bench:bench", "--realm", "bench.local", "--workers", "1", "--no-tcp",
        ] + extra
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        do {
            try waitUntilAnswering(port: port)
        } catch {
            stop()
            throw error
        }
    }

    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Sends STUN Binding requests until the server on `port` answers (up to 10 s).
func waitUntilAnswering(port: UInt16) throws {
    let s = try UDPSocket.bound(to: .loopbackV4(port: 0))
    defer { s.close() }
    try s.setReceiveTimeout(.milliseconds(100))
    var request = [UInt8](repeating: 0, count: 20)
    request[1] = 0x01  // Binding request
    request[4] = 0x21
    request[5] = 0x12
    request[6] = 0xA4
    request[7] = 0x42
    for i in 8..<20 { request[i] = UInt8.random(in: 0...255) }
    var reply = [UInt8](repeating: 0, count: 512)
    for _ in 0..<100 {
        try request.withUnsafeBytes { _ = try s.send($0, to: .loopbackV4(port: port)) }
        if (try reply.withUnsafeMutableBytes({ try s.receive(into: $0) })) != nil { return }
    }
    throw TURNError("uturnd did not answer on port \(port)")
}

@Suite(.serialized) struct DaemonFloodTests {
    @Test(.timeLimit(.minutes(1))) func floodAgainstRealUturnd() throws {
        guard let uturnd = findUturnd() else {
            print("skipping floodAgainstRealUturnd: uturnd not found (set UTURND or build it next to the tests)")
            return
        }
        let daemon = try UturndChild(binary: uturnd)
        defer { daemon.stop() }
        let port = daemon.port
        let pid = daemon.pid

        var options = try BenchOptions(arguments: [
            "flood", "--server", "127.0.0.1:\(port)", "--sessions", "2", "--duration", "1", "--warmup", "0",
            "--window", "16", "--relay-pid", "\(pid)", "--user", "bench", "--password", "bench",
        ])
        options.quiet = false
        var lines = [String]()
        let summary = try BenchRunner(options: options, log: { lines.append($0) }).run()
        print(summary.text)
        #expect(summary.received > 0)
        #expect(summary.received <= summary.sent)
        #expect(summary.malformed == 0)
        #expect(summary.latencyP50Micros > 0)
        #expect(summary.latencyP50Micros <= summary.latencyP99Micros)
        #expect(lines.contains { $0.contains("2 sessions allocated") })
        #expect(lines.contains { $0.hasPrefix("t=1 rt/s=") })
        #expect(summary.relayCPUMicrosPerRoundTrip != nil)

        // Allocation churn against the same daemon, briefly.
        var alloc = options
        alloc.mode = .alloc
        alloc.quiet = true
        let churn = try BenchRunner(options: alloc, log: { _ in }).run()
        #expect((churn.allocationsPerSecond ?? 0) > 0)
        #expect(churn.allocationFailures == 0)
    }

    /// rate mode: the VoIP shape in small, every session at a fixed rate.
    /// The schedule caps what is sent; on loopback everything comes back.
    @Test(.timeLimit(.minutes(1))) func rateAgainstRealUturnd() throws {
        guard let uturnd = findUturnd() else {
            print("skipping rateAgainstRealUturnd: uturnd not found (set UTURND or build it next to the tests)")
            return
        }
        let daemon = try UturndChild(binary: uturnd)
        defer { daemon.stop() }
        let options = try BenchOptions(arguments: [
            "rate", "--server", "127.0.0.1:\(daemon.port)", "--sessions", "20", "--rate", "100", "--duration", "1",
            "--warmup", "0.2", "--relay-pid", "\(daemon.pid)", "--quiet",
        ])
        let summary = try BenchRunner(options: options, log: { _ in }).run()
        print(summary.text)
        #expect(summary.sent > 0)
        #expect(summary.sent <= 20 * 100 + 20, "never more than 20 sessions x 100 packets/s x 1 s (+1 each)")
        #expect(summary.received == summary.sent)
        #expect(summary.malformed == 0)
        #expect(summary.relayCPUMicrosPerRoundTrip != nil)
        #expect(summary.cpuBusyPercent?.isEmpty == false)
    }

    /// --count: exactly N packets per session, all of them back (what the
    /// cross-check against turnutils_uclient -n relies on).
    @Test(.timeLimit(.minutes(1))) func countAgainstRealUturnd() throws {
        guard let uturnd = findUturnd() else {
            print("skipping countAgainstRealUturnd: uturnd not found (set UTURND or build it next to the tests)")
            return
        }
        let daemon = try UturndChild(binary: uturnd)
        defer { daemon.stop() }
        for mode in ["flood", "rate", "gso+gro"] {
            // gso+gro: trains of up to 8 frames (UDP_SEGMENT) out, UDP_GRO on the client and peer sockets.
            let shape = mode == "gso+gro" ? ["--gso", "8", "--gro"] : []
            let options = try BenchOptions(
                arguments: [
                    mode == "rate" ? "rate" : "flood", "--server", "127.0.0.1:\(daemon.port)", "--sessions", "3",
                    "--count",
                    "250", "--window", "8", "--rate", "500", "--duration", "30", "--warmup", "2", "--quiet",
                ] + shape)
            #expect(options.warmup == 0)
            let summary = try BenchRunner(options: options, log: { _ in }).run()
            #expect(summary.sent == 750, "\(mode)")
            #expect(summary.received == 750, "\(mode)")
            #expect(summary.malformed == 0, "\(mode)")
            #expect(summary.durationSeconds < 30, "\(mode): ends when everything came back")
            #expect(summary.harness == (mode == "gso+gro" ? "gso+gro" : "single"))
        }
    }

    /// Junk of every kind beside one legitimate session: what each kind
    /// provoked is what uturnd answers (RFC 8489 §6.3, §9.2.4; RFC 8656 §12),
    /// and the legitimate session lost nothing.
    @Test(.timeLimit(.minutes(1))) func invalidAgainstRealUturnd() throws {
        guard let uturnd = findUturnd() else {
            print("skipping invalidAgainstRealUturnd: uturnd not found (set UTURND or build it next to the tests)")
            return
        }
        // This test checks every junk kind's answer, so the per-source
        // request limits (which drop refusals past 200/s from one address,
        // tested in test_request_limits.py) are off here.
        let daemon = try UturndChild(binary: uturnd, extra: ["--failed-request-rate", "0", "--binding-request-rate", "0"])
        defer { daemon.stop() }
        let options = try BenchOptions(arguments: [
            "invalid", "--server", "127.0.0.1:\(daemon.port)", "--rate", "900", "--legit-rate", "100",
            "--duration", "1.5", "--warmup", "0.5", "--relay-pid", "\(daemon.pid)", "--seed", "6",
        ])
        var lines = [String]()
        let summary = try BenchRunner(options: options, log: { lines.append($0) }).run()
        print(summary.text)
        #expect(daemon.process.isRunning, "uturnd survived the junk")
        let invalid = try #require(summary.invalid)
        let byKind = Dictionary(uniqueKeysWithValues: invalid.kinds.map { ($0.kind, $0) })
        #expect(invalid.kinds.map(\.kind) == InvalidKind.allCases.map(\.rawValue))
        #expect(invalid.junkSendErrors == 0)
        for k in invalid.kinds {
            #expect(k.sent > 0, "\(k.kind) was sent")
            #expect(k.success == 0, "junk never succeeds: \(k.kind)")
            #expect(k.other == 0, "only STUN responses come back: \(k.kind)")
        }
        // Dropped without a word: not STUN, not a request we can answer, or no route.
        for kind in [InvalidKind.truncatedHeader, .badCookie, .randomBytes, .unboundChannel, .channelWithoutAllocation]
        {
            let k = try #require(byKind[kind.rawValue])
            #expect(k.errors.isEmpty && k.noAnswer == k.sent, "\(kind.rawValue): \(k.errorsText)")
        }
        // Broken lengths: dropped or 400 (RFC 8489 §6.3), nothing else.
        for kind in [InvalidKind.lengthPastEnd, .attributePastEnd] {
            let k = try #require(byKind[kind.rawValue])
            #expect(Set(k.errors.keys).isSubset(of: ["400"]), "\(kind.rawValue): \(k.errorsText)")
        }
        // Requests that fail authentication: every one gets 401.
        for kind in [InvalidKind.unauthenticatedAllocate, .wrongIntegrity] {
            let k = try #require(byKind[kind.rawValue])
            #expect(k.errors == ["401": k.sent], "\(kind.rawValue): \(k.errorsText)")
        }
        // The legitimate session relayed through all of it.
        #expect(summary.sent > 0)
        #expect(summary.received == summary.sent)
        #expect(summary.malformed == 0)
        #expect(invalid.relayCPUMicrosPerJunkPacket != nil)
        #expect(lines.contains { $0.hasPrefix("t=1 junk/s=") })
        let decoded = try JSONDecoder().decode(BenchSummary.self, from: try summary.json())
        #expect(decoded.invalid?.kinds.count == InvalidKind.allCases.count)
    }
}
