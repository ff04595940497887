import Foundation

/// What one run measured; rendered as text for people and as JSON for scripts.
public struct BenchSummary: Codable, Sendable, Equatable {
    public var mode: String
    public var sessions: Int
    public var payloadBytes: Int
    public var durationSeconds: Double
    /// Delivered round trips per second: median of the per-second samples.
    public var roundTripsPerSecond: Double
    /// Packets sent with a timestamp inside the measurement window.
    public var sent: UInt64
    /// Of those, how many came back.
    public var received: UInt64
    public var lossPercent: Double
    public var latencyP50Micros: Double
    public var latencyP99Micros: Double
    public var latencyP999Micros: Double
    /// Datagrams on the session sockets that were neither a well-formed
    /// ChannelData echo of ours nor a STUN message.
    public var malformed: UInt64
    /// Alloc mode: Allocate + Refresh + Refresh(0) cycles completed per second (median).
    public var allocationsPerSecond: Double?
    public var allocationFailures: UInt64?
    /// With --relay-pid: relay utime+stime over the window, per delivered round trip.
    public var relayCPUMicrosPerRoundTrip: Double?
    public var perSecond: [Double]

    public init(
        mode: String, sessions: Int, payloadBytes: Int, durationSeconds: Double,
        roundTripsPerSecond: Double = 0, sent: UInt64 = 0, received: UInt64 = 0, lossPercent: Double = 0,
        latencyP50Micros: Double = 0, latencyP99Micros: Double = 0, latencyP999Micros: Double = 0,
        malformed: UInt64 = 0, allocationsPerSecond: Double? = nil, allocationFailures: UInt64? = nil,
        relayCPUMicrosPerRoundTrip: Double? = nil, perSecond: [Double] = []
    ) {
        self.mode = mode
        self.sessions = sessions
        self.payloadBytes = payloadBytes
        self.durationSeconds = durationSeconds
        self.roundTripsPerSecond = roundTripsPerSecond
        self.sent = sent
        self.received = received
        self.lossPercent = lossPercent
        self.latencyP50Micros = latencyP50Micros
        self.latencyP99Micros = latencyP99Micros
        self.latencyP999Micros = latencyP999Micros
        self.malformed = malformed
        self.allocationsPerSecond = allocationsPerSecond
        self.allocationFailures = allocationFailures
        self.relayCPUMicrosPerRoundTrip = relayCPUMicrosPerRoundTrip
        self.perSecond = perSecond
    }

    /// Median of per-second samples (mean of the middle two for an even count); 0 when empty.
    public static func median(_ samples: [Double]) -> Double {
        guard !samples.isEmpty else { return 0 }
        let s = samples.sorted()
        let m = s.count / 2
        return s.count % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2
    }

    /// Loss in percent of `sent`; 0 when nothing was sent.
    public static func loss(sent: UInt64, received: UInt64) -> Double {
        guard sent > 0 else { return 0 }
        return Double(sent - min(sent, received)) * 100 / Double(sent)
    }

    public var text: String {
        var lines = ["--- uturn-bench \(mode): \(sessions) sessions, \(payloadBytes)-byte payloads, \(fmt(durationSeconds)) s window"]
        if mode == "alloc" {
            lines.append("allocations/s (median)   \(fmt(allocationsPerSecond ?? 0))")
            lines.append("allocation failures      \(allocationFailures ?? 0)")
        } else {
            lines.append("round trips/s (median)   \(fmt(roundTripsPerSecond))")
            lines.append("sent                     \(sent)")
            lines.append("received                 \(received)")
            lines.append("loss                     \(fmt(lossPercent, 3)) %")
            lines.append("latency p50/p99/p99.9    \(fmt(latencyP50Micros)) / \(fmt(latencyP99Micros)) / \(fmt(latencyP999Micros)) µs")
            lines.append("malformed replies        \(malformed)")
        }
        if let cpu = relayCPUMicrosPerRoundTrip {
            lines.append("relay CPU per \(mode == "alloc" ? "allocation" : "round trip") \(fmt(cpu, 2)) µs")
        }
        return lines.joined(separator: "\n")
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    func fmt(_ v: Double, _ digits: Int = 1) -> String {
        String(format: "%.\(digits)f", v)
    }
}
