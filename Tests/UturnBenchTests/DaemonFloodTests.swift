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
            guard let s = try? UDPSocket.bound(to: .loopbackV4(port: p)) else { ok = false; break }
            s.close()
        }
        if ok { return base...(base + count - 1) }
    }
    throw TURNError("no free port range")
}

@Suite(.serialized) struct DaemonFloodTests {
    @Test(.timeLimit(.minutes(1))) func floodAgainstRealUturnd() throws {
        guard let uturnd = findUturnd() else {
            print("skipping floodAgainstRealUturnd: uturnd not found (set UTURND or build it next to the tests)")
            return
        }
        let port = try freeUDPPort()
        let relay = try freePortRange(count: 64)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: uturnd)
        process.arguments = [
            "--listening-ip", "127.0.0.1", "--listening-port", "\(port)", "--relay-ip", "127.0.0.1",
            "--min-port", "\(relay.lowerBound)", "--max-port", "\(relay.upperBound)",
            "--allow-loopback-peers", "--user", "bench:bench", "--realm", "bench.local", "--workers", "1",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        defer {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
        }
        try waitUntilAnswering(port: port)

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

    /// Sends STUN Binding requests until uturnd answers (up to 10 s).
    func waitUntilAnswering(port: UInt16) throws {
        let s = try UDPSocket.bound(to: .loopbackV4(port: 0))
        defer { s.close() }
        try s.setReceiveTimeout(.milliseconds(100))
        var request = [UInt8](repeating: 0, count: 20)
        request[1] = 0x01  // Binding request
        request[4] = 0x21; request[5] = 0x12; request[6] = 0xA4; request[7] = 0x42
        for i in 8..<20 { request[i] = UInt8.random(in: 0...255) }
        var reply = [UInt8](repeating: 0, count: 512)
        for _ in 0..<100 {
            try request.withUnsafeBytes { _ = try s.send($0, to: .loopbackV4(port: port)) }
            if let _ = try reply.withUnsafeMutableBytes({ try s.receive(into: $0) }) { return }
        }
        throw TURNError("uturnd did not answer on port \(port)")
    }
}
