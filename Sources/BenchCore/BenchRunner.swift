import Foundation
import STUN
import URing
import CURing

/// Runs one benchmark: sessions, the peer reflector, the chosen mode, the summary.
public struct BenchRunner {
    public var options: BenchOptions
    public var log: (String) -> Void

    public init(options: BenchOptions, log: @escaping (String) -> Void = { print($0) }) {
        self.options = options
        self.log = log
    }

    public func run() throws -> BenchSummary {
        guard let serverT = options.server else { throw BenchOptionsError("--server is required") }
        let server = SocketAddress(serverT)
        if let cpu = options.cpu, curing_pin_current_thread(Int32(cpu)) != 0 {
            log("warning: could not pin to CPU \(cpu)")
        }
        switch options.mode {
        case .alloc: return try runAlloc(server: server)
        case .flood, .rate: return try runTraffic(server: server)
        }
    }

    private func openSessions(server: SocketAddress) throws -> [TURNSession] {
        var sessions = [TURNSession]()
        for _ in 0..<options.sessions {
            sessions.append(
                try TURNSession(server: server, user: options.user, password: options.password, realm: options.realm))
        }
        return sessions
    }

    private func runTraffic(server: SocketAddress) throws -> BenchSummary {
        var reflector: Reflector?
        let peer: TransportAddress
        if let external = options.peer {
            peer = external
        } else {
            let bind = server.family == .v4 ? SocketAddress.loopbackV4(port: options.peerPort) : SocketAddress.loopbackV6(port: options.peerPort)
            let r = try Reflector(bind: bind)
            r.start()
            reflector = r
            peer = r.address.transportAddress
        }
        defer { reflector?.stop() }
        let sessions = try openSessions(server: server)
        defer { for s in sessions { s.close() } }
        let setupStart = monotonicNanos()
        for s in sessions {
            try s.allocate()
            try s.channelBind(peer: peer)
        }
        let setupMs = Double(monotonicNanos() - setupStart) / 1e6
        if !options.quiet {
            log("\(sessions.count) sessions allocated and bound to peer \(peer) in \(fmt2(setupMs)) ms (first relayed address \(sessions.first?.relayed.map { "\($0)" } ?? "?"))")
        }
        let engine = TrafficEngine(options: options, server: server, log: log)
        let r = try engine.run(sessions: sessions)
        // Release the allocations (best effort; the server expires them anyway).
        for s in sessions { try? s.refresh(lifetime: 0) }
        var summary = BenchSummary(
            mode: options.mode.rawValue, sessions: options.sessions, payloadBytes: options.payload,
            durationSeconds: options.duration)
        summary.perSecond = r.perSecond
        summary.roundTripsPerSecond = BenchSummary.median(r.perSecond)
        if summary.perSecond.isEmpty, options.duration > 0 {
            summary.roundTripsPerSecond = Double(r.received) / options.duration
        }
        summary.sent = r.sent
        summary.received = r.received
        summary.lossPercent = BenchSummary.loss(sent: r.sent, received: r.received)
        summary.latencyP50Micros = Double(r.latency.valueAtPercentile(50)) / 1000
        summary.latencyP99Micros = Double(r.latency.valueAtPercentile(99)) / 1000
        summary.latencyP999Micros = Double(r.latency.valueAtPercentile(99.9)) / 1000
        summary.malformed = r.malformed
        if let cpu = r.relayCPUMicros, r.received > 0 { summary.relayCPUMicrosPerRoundTrip = cpu / Double(r.received) }
        return summary
    }

    /// Allocation churn: each session in turn runs Allocate, Refresh, Refresh(0);
    /// one completed cycle is one allocation. Blocking transactions, one at a time.
    private func runAlloc(server: SocketAddress) throws -> BenchSummary {
        let sessions = try openSessions(server: server)
        defer { for s in sessions { s.close() } }
        let start = monotonicNanos()
        let windowStart = start + UInt64(options.warmup * 1e9)
        let windowEnd = windowStart + UInt64(options.duration * 1e9)
        var nextTick = start + 1_000_000_000
        var tick = 1
        var second = 0, secondFailures = 0
        var perSecond = [Double]()
        var failures: UInt64 = 0
        var cpuAtStart: Double?
        var cpuUsed: Double?
        var completedInWindow: UInt64 = 0
        var i = 0
        while true {
            let now = monotonicNanos()
            if cpuAtStart == nil, now >= windowStart, let pid = options.relayPID { cpuAtStart = processCPUMicros(pid: pid) }
            if now >= nextTick {
                if nextTick - 1_000_000_000 >= windowStart && nextTick <= windowEnd + 1_000_000 { perSecond.append(Double(second)) }
                if !options.quiet {
                    log("t=\(tick) alloc/s=\(second) failures=\(secondFailures)\(nextTick <= windowStart ? " (warmup)" : "")")
                }
                second = 0
                secondFailures = 0
                nextTick += 1_000_000_000
                tick += 1
            }
            if now >= windowEnd { break }
            let s = sessions[i % sessions.count]
            i += 1
            do {
                try s.allocate()
                try s.refresh(lifetime: 600)
                try s.refresh(lifetime: 0)
                second += 1
                if now >= windowStart { completedInWindow += 1 }
            } catch {
                failures += 1
                secondFailures += 1
                try? s.refresh(lifetime: 0)
                if failures <= 3 { log("alloc cycle failed: \(error)") }
            }
        }
        if let pid = options.relayPID, let c0 = cpuAtStart, let c1 = processCPUMicros(pid: pid) { cpuUsed = c1 - c0 }
        var summary = BenchSummary(
            mode: "alloc", sessions: options.sessions, payloadBytes: options.payload, durationSeconds: options.duration)
        summary.perSecond = perSecond
        summary.allocationsPerSecond =
            perSecond.isEmpty ? Double(completedInWindow) / options.duration : BenchSummary.median(perSecond)
        summary.allocationFailures = failures
        if let cpuUsed, completedInWindow > 0 { summary.relayCPUMicrosPerRoundTrip = cpuUsed / Double(completedInWindow) }
        return summary
    }
}
