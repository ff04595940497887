import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Relay CPU (utime + stime) of a process, in microseconds, from /proc/PID/stat.
public func processCPUMicros(pid: Int32) -> Double? {
    guard let f = fopen("/proc/\(pid)/stat", "r") else { return nil }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 4096)
    guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
    let line = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // Fields after the parenthesised command name (which may contain spaces).
    guard let close = line.lastIndex(of: ")") else { return nil }
    let rest = line[line.index(after: close)...].split(separator: " ")
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    guard rest.count > 12, let u = Double(rest[11]), let s = Double(rest[12]) else { return nil }
    return (u + s) * 1_000_000 / clockTicksPerSecond
}

let clockTicksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

/// Busy and total time of every CPU, in clock ticks, from the `cpuN` lines
/// of /proc/stat. Busy is everything but idle and iowait, so softirq work
/// that a relay's sends cause on its CPU counts (the relay's own utime and
/// stime do not include it).
public func cpuTicks() -> [(busy: UInt64, total: UInt64)] {
    guard let f = fopen("/proc/stat", "r") else { return [] }
    defer { fclose(f) }
    var result = [(busy: UInt64, total: UInt64)]()
    var buf = [CChar](repeating: 0, count: 1024)
    while fgets(&buf, Int32(buf.count), f) != nil {
        let line = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard line.hasPrefix("cpu"), let c = line.dropFirst(3).first, c.isNumber else { continue }
        let fields = line.split(separator: " ").dropFirst().compactMap {
            UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard fields.count >= 5 else { continue }
        let total = fields.prefix(8).reduce(0, +)
        result.append((busy: total - fields[3] - fields[4], total: total))
    }
    return result
}

/// CPU use over a measured window: the relay process's utime + stime (with
/// its PID) and each CPU's busy time, sampled when the window opens and
/// when it closes.
struct CPUWindow {
    let relayPID: Int32?
    private var relayAtStart: Double?
    private var ticksAtStart: [(busy: UInt64, total: UInt64)] = []
    private var startNanos: UInt64 = 0
    private(set) var started = false
    private(set) var finished = false
    /// Relay CPU over the window, µs.
    private(set) var relayMicros: Double?
    /// Relay CPU over the window, % of one CPU.
    private(set) var relayPercent: Double?
    /// Per CPU: busy µs and % over the window.
    private(set) var busyMicros: [Double] = []
    private(set) var busyPercent: [Double] = []

    init(relayPID: Int32?) { self.relayPID = relayPID }

    mutating func start(now: UInt64) {
        started = true
        startNanos = now
        relayAtStart = relayPID.flatMap(processCPUMicros(pid:))
        ticksAtStart = cpuTicks()
    }

    mutating func finish(now: UInt64) {
        guard started, !finished else { return }
        finished = true
        let seconds = Double(now - startNanos) / 1e9
        if let pid = relayPID, let c0 = relayAtStart, let c1 = processCPUMicros(pid: pid) {
            relayMicros = c1 - c0
            if seconds > 0 { relayPercent = (c1 - c0) / 1e4 / seconds }
        }
        let ticks = cpuTicks()
        guard ticks.count == ticksAtStart.count else { return }
        for (a, b) in zip(ticksAtStart, ticks) {
            let busy = Double(b.busy &- a.busy)
            let total = Double(b.total &- a.total)
            busyMicros.append(busy * 1_000_000 / clockTicksPerSecond)
            busyPercent.append(total > 0 ? busy * 100 / total : 0)
        }
    }
}
