import CURing
import Foundation
import STUN
import URing

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
        raiseOpenFileLimit()
        switch options.mode {
        case .alloc: return try runAlloc(server: server)
        case .flood, .rate: return try runTraffic(server: server)
        case .invalid: return try runInvalid(server: server)
        }
    }

    /// One descriptor per session: lift the soft limit to the hard one.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// The peer: --peer, or our own reflector on --peer-port (0: any port).
    private func startPeer(server: SocketAddress) throws -> (TransportAddress, Reflector?) {
        if let external = options.peer { return (external, nil) }
        let bind =
            server.family == .v4
            ? SocketAddress.loopbackV4(port: options.peerPort) : SocketAddress.loopbackV6(port: options.peerPort)
        // The harness's GSO shape: the peer takes trains whole and echoes them whole, as turnflood's does.
        let r = try Reflector(bind: bind, trains: options.gso > 1)
        r.start()
        return (r.address.transportAddress, r)
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
        let (peer, reflector) = try startPeer(server: server)
        defer { reflector?.stop() }
        let sessions = try openSessions(server: server)
        defer { for s in sessions { s.close() } }
        if options.noTurn {
            if !options.quiet {
                log("\(sessions.count) sessions, no TURN: ChannelData 0x4000 straight to \(serverT(server))")
            }
        } else {
            let setupStart = monotonicNanos()
            for s in sessions {
                try s.allocate()
                try s.channelBind(peer: peer)
            }
            let setupMs = Double(monotonicNanos() - setupStart) / 1e6
            if !options.quiet {
                log(
                    "\(sessions.count) sessions allocated and bound to peer \(peer) in \(fmt2(setupMs)) ms (first relayed address \(sessions.first?.relayed.map { "\($0)" } ?? "?"))"
                )
            }
        }
        let engine = TrafficEngine(options: options, server: server, log: log)
        let r = try engine.run(sessions: sessions)
        // Release the allocations (best effort; the server expires them anyway).
        if !options.noTurn { for s in sessions { try? s.refresh(lifetime: 0) } }
        var summary = BenchSummary(
            mode: options.mode.rawValue, sessions: options.sessions, payloadBytes: options.payload,
            durationSeconds: options.duration)
        summary.perSecond = r.perSecond
        summary.roundTripsPerSecond = BenchSummary.median(r.perSecond)
        if options.count != nil { summary.durationSeconds = r.windowSeconds }
        if summary.perSecond.isEmpty, summary.durationSeconds > 0 {
            summary.roundTripsPerSecond = Double(r.received) / summary.durationSeconds
        }
        summary.sent = r.sent
        summary.received = r.received
        summary.lossPercent = BenchSummary.loss(sent: r.sent, received: r.received)
        summary.latencyP50Micros = Double(r.latency.valueAtPercentile(50)) / 1000
        summary.latencyP99Micros = Double(r.latency.valueAtPercentile(99)) / 1000
        summary.latencyP999Micros = Double(r.latency.valueAtPercentile(99.9)) / 1000
        summary.malformed = r.malformed
        if let cpu = r.cpu.relayMicros, r.received > 0 { summary.relayCPUMicrosPerRoundTrip = cpu / Double(r.received) }
        fill(&summary, cpu: r.cpu)
        return summary
    }

    private func fill(_ summary: inout BenchSummary, cpu: CPUWindow) {
        summary.harness = options.harness
        summary.relayCPUPercent = cpu.relayPercent
        if !cpu.busyPercent.isEmpty {
            summary.cpuBusyMicros = cpu.busyMicros
            summary.cpuBusyPercent = cpu.busyPercent
        }
    }

    private func serverT(_ a: SocketAddress) -> String { "\(a.transportAddress)" }

    /// Junk at --rate packets/s from one socket per kind, while one
    /// legitimate session relays --legit-rate packets/s to the peer.
    private func runInvalid(server: SocketAddress) throws -> BenchSummary {
        let (peer, reflector) = try startPeer(server: server)
        defer { reflector?.stop() }
        let legit = try TURNSession(
            server: server, user: options.user, password: options.password, realm: options.realm)
        defer { legit.close() }
        try legit.allocate()
        try legit.channelBind(peer: peer)
        var seed = options.seed ?? UInt64.random(in: 0...UInt64.max)
        if options.seed == nil, seed == 0 { seed = 1 }
        var builder = InvalidPacketBuilder(seed: seed, payload: options.payload, user: options.user)
        builder.avoidChannel = legit.channel
        var sessions = [TURNSession]()
        defer { for s in sessions { s.close() } }
        var sources = [InvalidEngine.Source]()
        for kind in options.kinds {
            let s = try TURNSession(
                server: server, user: options.user, password: options.password, realm: options.realm)
            sessions.append(s)
            if kind.needsAllocation { try s.allocate() }
            if kind.needsChallenge {
                let (realm, nonce) = try s.challenge()
                try builder.setChallenge(realm: realm, nonce: nonce, password: options.password)
            }
            sources.append(.init(kind: kind, fd: s.socket.rawValue))
        }
        if !options.quiet {
            log(
                "legitimate session relayed at \(legit.relayed.map { "\($0)" } ?? "?") bound to peer \(peer); junk: \(options.kinds.map(\.rawValue).joined(separator: ", ")) at \(options.rate) packets/s (seed \(seed))"
            )
        }
        let engine = InvalidEngine(options: options, server: server, log: log)
        let r = try engine.run(legit: legit, sources: sources, builder: builder)
        try? legit.refresh(lifetime: 0)
        for (s, kind) in zip(sessions, options.kinds) where kind.needsAllocation { try? s.refresh(lifetime: 0) }

        var summary = BenchSummary(
            mode: "invalid", sessions: 1, payloadBytes: options.payload, durationSeconds: options.duration)
        summary.perSecond = r.perSecond
        summary.roundTripsPerSecond = BenchSummary.median(r.perSecond)
        summary.sent = r.legitSent
        summary.received = r.legitReceived
        summary.lossPercent = BenchSummary.loss(sent: r.legitSent, received: r.legitReceived)
        summary.latencyP50Micros = Double(r.latency.valueAtPercentile(50)) / 1000
        summary.latencyP99Micros = Double(r.latency.valueAtPercentile(99)) / 1000
        summary.latencyP999Micros = Double(r.latency.valueAtPercentile(99.9)) / 1000
        summary.malformed = r.legitMalformed
        var kinds = [InvalidKindSummary]()
        for (i, source) in sources.enumerated() {
            var errors = [String: UInt64]()
            for (code, n) in r.errors[i] { errors[String(code)] = n }
            kinds.append(
                InvalidKindSummary(
                    kind: source.kind.rawValue, sent: r.sent[i], success: r.success[i], errors: errors,
                    other: r.other[i]))
        }
        var invalid = InvalidSummary(
            junkRate: options.rate, legitRate: options.legitRate, kinds: kinds, junkSendErrors: r.junkSendErrors)
        if let cpu = r.cpu.relayMicros, invalid.junkSent > 0 {
            invalid.relayCPUMicrosPerJunkPacket = cpu / Double(invalid.junkSent)
        }
        summary.invalid = invalid
        fill(&summary, cpu: r.cpu)
        return summary
    }

    /// Allocation churn, one new client at a time: each cycle opens a fresh
    /// 5-tuple and runs what a new client does, Allocate (401), Allocate with
    /// credentials, Refresh, Refresh(0); one completed cycle is one allocation.
    /// Blocking transactions, one at a time. A server may hold a deleted
    /// allocation's 5-tuple for a while (coturn 4.6.1 answers 437 to a new
    /// Allocate from it for about a second), so over IPv4 the source address
    /// walks 127.1.0.1-127.1.255.254 and no 5-tuple comes back within 65,024
    /// cycles; over IPv6 it is ::1 with a kernel-chosen port.
    private func runAlloc(server: SocketAddress) throws -> BenchSummary {
        var sourceIndex: UInt32 = 0
        func nextSource() -> SocketAddress? {
            guard server.family == .v4 else { return nil }
            defer { sourceIndex = (sourceIndex + 1) % (256 * 254) }
            return SocketAddress(v4: 0x7F01_0000 | (sourceIndex / 254) << 8 | (sourceIndex % 254 + 1), port: 0)
        }
        let start = monotonicNanos()
        let windowStart = start + UInt64(options.warmup * 1e9)
        let windowEnd = windowStart + UInt64(options.duration * 1e9)
        var nextTick = start + 1_000_000_000
        var tick = 1
        var second = 0
        var secondFailures = 0
        var perSecond = [Double]()
        var failures: UInt64 = 0
        var cpu = CPUWindow(relayPID: options.relayPID)
        var completedInWindow: UInt64 = 0
        while true {
            let now = monotonicNanos()
            if !cpu.started, now >= windowStart { cpu.start(now: now) }
            if now >= nextTick {
                if nextTick - 1_000_000_000 >= windowStart && nextTick <= windowEnd + 1_000_000 {
                    perSecond.append(Double(second))
                }
                if !options.quiet {
                    log(
                        "t=\(tick) alloc/s=\(second) failures=\(secondFailures)\(nextTick <= windowStart ? " (warmup)" : "")"
                    )
                }
                second = 0
                secondFailures = 0
                nextTick += 1_000_000_000
                tick += 1
            }
            if now >= windowEnd {
                cpu.finish(now: now)
                break
            }
            do {
                let s = try TURNSession(
                    server: server, user: options.user, password: options.password, realm: options.realm,
                    local: nextSource())
                defer { s.close() }
                do {
                    try s.allocate()
                    try s.refresh(lifetime: 600)
                    try s.refresh(lifetime: 0)
                    second += 1
                    if now >= windowStart { completedInWindow += 1 }
                } catch {
                    failures += 1
                    secondFailures += 1
                    if s.relayed != nil { try? s.refresh(lifetime: 0) }
                    if failures <= 3 { log("alloc cycle failed: \(error)") }
                }
            }
        }
        var summary = BenchSummary(
            mode: "alloc", sessions: 1, payloadBytes: options.payload, durationSeconds: options.duration)
        summary.perSecond = perSecond
        summary.allocationsPerSecond =
            perSecond.isEmpty ? Double(completedInWindow) / options.duration : BenchSummary.median(perSecond)
        summary.allocationFailures = failures
        summary.allocations = completedInWindow
        if let cpuUsed = cpu.relayMicros, completedInWindow > 0 {
            summary.relayCPUMicrosPerRoundTrip = cpuUsed / Double(completedInWindow)
        }
        fill(&summary, cpu: cpu)
        return summary
    }
}
