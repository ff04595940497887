/// uturnctl's human output: aligned tables and short numbers. Pure, for tests.
public enum Tables {
    /// Columns padded to their widest cell (the last is not padded);
    /// numeric columns (`rightAligned`) line up on the right.
    public static func render(header: [String], rows: [[String]], rightAligned: Set<Int> = []) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (i, cell) in cells.enumerated() {
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                let last = i == cells.count - 1
                if rightAligned.contains(i) {
                    out += pad + cell
                } else {
                    out += last ? cell : cell + pad
                }
                if !last { out += "  " }
            }
            return out
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n") + "\n"
    }

    /// 59 s → "59s", 65 → "1m05s", 3725 → "1h02m", 90000 → "1d01h".
    public static func duration(_ seconds: Int) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" + two(s % 60) + "s" }
        if s < 86400 { return "\(s / 3600)h" + two(s / 60 % 60) + "m" }
        return "\(s / 86400)d" + two(s / 3600 % 24) + "h"
    }

    private static func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// Bytes in binary units with one decimal: 999 → "999 B", 1536 → "1.5 KiB".
    public static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(n) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    /// The `sessions` table, then a count (and any workers that did not answer).
    public static func sessions(_ list: SessionList) -> String {
        let header = [
            "ID", "USER", "TRANSPORT", "CLIENT", "RELAYED", "PEERS", "CHANNELS", "AGE", "PKTS>PEER", "BYTES>PEER",
            "PKTS>CLIENT", "BYTES>CLIENT",
        ]
        let rows = list.sessions.map { s -> [String] in
            [
                s.id, s.user.isEmpty ? "-" : s.user, s.transport + (s.relay_transport == "tcp" ? "/tcp-relay" : ""),
                s.client, s.relayed.isEmpty ? "-" : s.relayed.joined(separator: ","), "\(s.permissions.count)",
                "\(s.channels.count)", duration(s.age_seconds), "\(s.to_peer.packets)", bytes(s.to_peer.bytes),
                "\(s.to_client.packets)", bytes(s.to_client.bytes),
            ]
        }
        var out = list.sessions.isEmpty ? "" : render(header: header, rows: rows, rightAligned: [5, 6, 7, 8, 9, 10, 11])
        out += "\(list.sessions.count) session\(list.sessions.count == 1 ? "" : "s")\n"
        out += missing(list.workers_missing)
        return out
    }

    /// What `disconnect` prints.
    public static func ended(_ list: SessionList, user: String?) -> String {
        let n = list.sessions.count
        var out: String
        if n == 0 {
            out = user.map { "no session of \($0) to end\n" } ?? "no such session\n"
        } else {
            out = "ended \(n) session\(n == 1 ? "" : "s")\(user.map { " of \($0)" } ?? ""): "
            out += list.sessions.map { "\($0.id) (\($0.client) \($0.transport))" }.joined(separator: ", ") + "\n"
        }
        return out + missing(list.workers_missing)
    }

    /// The `info` text.
    public static func info(_ i: ServerInfo) -> String {
        var out = render(
            header: ["version", i.version],
            rows: [
                ["backend", i.backend], ["workers", "\(i.workers)"], ["uptime", duration(i.uptime_seconds)],
                ["state", i.draining ? "draining" : "relaying"], ["allocations", "\(i.allocations)"],
                ["realm", i.realm],
            ])
        if !i.config.isEmpty {
            out += "configuration:\n" + i.config.map { "  \($0)\n" }.joined()
        }
        return out
    }

    static func missing(_ workers: [Int]) -> String {
        guard !workers.isEmpty else { return "" }
        return "warning: worker\(workers.count == 1 ? "" : "s") \(workers.map(String.init).joined(separator: ", ")) did not answer in time; their sessions are not shown\n"
    }
}
