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
    /// Alloc mode: cycles started inside the window (what relay CPU is divided by).
    public var allocations: UInt64?
    /// With --relay-pid: relay utime+stime over the window, per delivered round trip.
    public var relayCPUMicrosPerRoundTrip: Double?
    /// With --relay-pid: relay utime+stime over the window, in % of one CPU.
    public var relayCPUPercent: Double?
    /// Per CPU (index = CPU number), from /proc/stat over the window: busy
    /// time (all but idle and iowait, so softirq counts) in µs and in %.
    public var cpuBusyMicros: [Double]?
    public var cpuBusyPercent: [Double]?
    /// The load's harness shape: "single" (one datagram per send, no UDP_GRO).
    public var harness: String?
    /// `invalid` mode: the junk and what came back; the fields above are the
    /// legitimate session's.
    public var invalid: InvalidSummary?
    public var perSecond: [Double]

    public init(
        mode: String, sessions: Int, payloadBytes: Int, durationSeconds: Double,
        roundTripsPerSecond: Double = 0, sent: UInt64 = 0, received: UInt64 = 0, lossPercent: Double = 0,
        latencyP50Micros: Double = 0, latencyP99Micros: Double = 0, latencyP999Micros: Double = 0,
        malformed: UInt64 = 0, allocationsPerSecond: Double? = nil, allocationFailures: UInt64? = nil,
        relayCPUMicrosPerRoundTrip: Double? = nil, perSecond: [Double] = [], invalid: InvalidSummary? = nil
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
        self.invalid = invalid
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
        var lines = [
            "--- uturn-bench \(mode): \(sessions) sessions, \(payloadBytes)-byte payloads, \(fmt(durationSeconds)) s window"
        ]
        if let invalid {
            lines.append(contentsOf: invalid.lines)
            lines.append("legitimate session, one channel at \(invalid.legitRate) packets/s during the junk:")
            lines.append("  sent                   \(sent)")
            lines.append("  received               \(received)")
            lines.append("  loss                   \(fmt(lossPercent, 3)) %")
            lines.append(
                "  latency p50/p99/p99.9  \(fmt(latencyP50Micros)) / \(fmt(latencyP99Micros)) / \(fmt(latencyP999Micros)) µs"
            )
            lines.append("  malformed replies      \(malformed)")
            if let cpu = invalid.relayCPUMicrosPerJunkPacket {
                lines.append("relay CPU per junk packet \(fmt(cpu, 2)) µs")
            }
            return lines.joined(separator: "\n")
        }
        if mode == "alloc" {
            lines.append("allocations/s (median)   \(fmt(allocationsPerSecond ?? 0))")
            lines.append("allocation failures      \(allocationFailures ?? 0)")
        } else {
            lines.append("round trips/s (median)   \(fmt(roundTripsPerSecond))")
            lines.append("sent                     \(sent)")
            lines.append("received                 \(received)")
            lines.append("loss                     \(fmt(lossPercent, 3)) %")
            lines.append(
                "latency p50/p99/p99.9    \(fmt(latencyP50Micros)) / \(fmt(latencyP99Micros)) / \(fmt(latencyP999Micros)) µs"
            )
            lines.append("malformed replies        \(malformed)")
        }
        if let cpu = relayCPUMicrosPerRoundTrip {
            lines.append("relay CPU per \(mode == "alloc" ? "allocation" : "round trip") \(fmt(cpu, 2)) µs")
        }
        if let pct = relayCPUPercent { lines.append("relay CPU                \(fmt(pct)) % of one CPU") }
        if let busy = cpuBusyPercent, !busy.isEmpty {
            lines.append("CPU busy (per CPU)       \(busy.map { fmt($0) + " %" }.joined(separator: ", "))")
        }
        return lines.joined(separator: "\n")
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

}

func fmt(_ v: Double, _ digits: Int = 1) -> String {
    String(format: "%.\(digits)f", v)
}

/// What one junk kind provoked, counted over the packets sent in the window.
public struct InvalidKindSummary: Codable, Sendable, Equatable {
    public var kind: String
    public var sent: UInt64
    /// Success responses (a server that takes junk for a valid request).
    public var success: UInt64
    /// Error responses by ERROR-CODE ("401": n; "0" when the code is missing).
    public var errors: [String: UInt64]
    /// Answers that are not STUN responses (indications, ChannelData, bytes).
    public var other: UInt64
    /// Sent minus every answer counted above.
    public var noAnswer: UInt64

    public init(kind: String, sent: UInt64, success: UInt64 = 0, errors: [String: UInt64] = [:], other: UInt64 = 0) {
        self.kind = kind
        self.sent = sent
        self.success = success
        self.errors = errors
        self.other = other
        let answered = success + errors.values.reduce(0, +) + other
        noAnswer = sent - min(sent, answered)
    }

    public var errorsText: String {
        errors.isEmpty ? "-" : errors.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " ")
    }
}

/// `invalid` mode: the junk rate, the answers per kind, and relay CPU per junk packet.
public struct InvalidSummary: Codable, Sendable, Equatable {
    /// Junk offered, packets/s over all kinds.
    public var junkRate: Int
    /// The legitimate session's packets/s.
    public var legitRate: Int
    public var kinds: [InvalidKindSummary]
    public var junkSendErrors: UInt64
    /// With --relay-pid: relay CPU over the window / junk packets sent in it
    /// (the legitimate session's few packets included).
    public var relayCPUMicrosPerJunkPacket: Double?

    public init(
        junkRate: Int, legitRate: Int, kinds: [InvalidKindSummary], junkSendErrors: UInt64 = 0,
        relayCPUMicrosPerJunkPacket: Double? = nil
    ) {
        self.junkRate = junkRate
        self.legitRate = legitRate
        self.kinds = kinds
        self.junkSendErrors = junkSendErrors
        self.relayCPUMicrosPerJunkPacket = relayCPUMicrosPerJunkPacket
    }

    public var junkSent: UInt64 { kinds.reduce(0) { $0 + $1.sent } }

    var lines: [String] {
        let width = max(24, (kinds.map(\.kind.count).max() ?? 0) + 2)
        func pad(_ s: String, _ w: Int) -> String {
            s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count)
        }
        var out = [
            "junk: \(junkRate) packets/s over \(kinds.count) kinds, \(junkSent) sent in the window"
                + (junkSendErrors > 0 ? " (\(junkSendErrors) sends failed)" : "")
        ]
        out.append(
            pad("kind", width) + pad("sent", 10) + pad("success", 9) + pad("other", 7) + pad("no answer", 11) + "errors"
        )
        for k in kinds {
            out.append(
                pad(k.kind, width) + pad("\(k.sent)", 10) + pad("\(k.success)", 9) + pad("\(k.other)", 7)
                    + pad("\(k.noAnswer)", 11) + k.errorsText)
        }
        return out
    }
}
