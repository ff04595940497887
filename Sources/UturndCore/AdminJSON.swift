import Relay
import STUN
import TURN

/// A small JSON writer for the admin API's answers (uturnd keeps
/// Foundation out of the daemon). Values are written in call order; the
/// caller nests objects and arrays with the closures.
struct JSONWriter {
    private(set) var text = ""
    private var needsComma = [false]

    private mutating func separate() {
        if needsComma[needsComma.count - 1] { text += "," }
        needsComma[needsComma.count - 1] = true
    }

    private mutating func key(_ k: String?) {
        separate()
        if let k {
            Self.quote(k, into: &text)
            text += ":"
        }
    }

    mutating func object(_ k: String? = nil, _ body: (inout JSONWriter) -> Void) {
        key(k)
        text += "{"
        needsComma.append(false)
        body(&self)
        needsComma.removeLast()
        text += "}"
    }

    mutating func array(_ k: String? = nil, _ body: (inout JSONWriter) -> Void) {
        key(k)
        text += "["
        needsComma.append(false)
        body(&self)
        needsComma.removeLast()
        text += "]"
    }

    mutating func string(_ k: String, _ v: String) {
        key(k)
        Self.quote(v, into: &text)
    }

    mutating func number(_ k: String, _ v: some BinaryInteger) {
        key(k)
        text += "\(v)"
    }

    /// An array element.
    mutating func element(_ v: String) {
        key(nil)
        Self.quote(v, into: &text)
    }

    /// An array element.
    mutating func element(_ v: some BinaryInteger) {
        key(nil)
        text += "\(v)"
    }

    mutating func bool(_ k: String, _ v: Bool) {
        key(k)
        text += v ? "true" : "false"
    }

    /// `s` as a JSON string: quotes, backslashes and control characters
    /// escaped (usernames come from clients, so anything may be in them).
    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F || (0x2028...0x2029).contains(scalar.value):
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// The admin API's JSON documents (docs/administration.md shows each).
enum AdminJSON {
    /// A session's id: worker, slot and generation ("0.3.1"); stable for
    /// the allocation's life and never reused for another while it lives.
    static func sessionID(worker: Int, _ id: AllocationID) -> String { "\(worker).\(id.slot).\(id.generation)" }

    /// Parses "W.S.G" back; nil when malformed.
    static func parseSessionID(_ text: Substring) -> (worker: Int, id: AllocationID)? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let w = Int(parts[0]), w >= 0, let s = UInt32(parts[1]), let g = UInt32(parts[2])
        else { return nil }
        return (w, AllocationID(slot: s, generation: g))
    }

    static func transportName(_ t: ClientTransport) -> String {
        switch t {
        case .udp: "udp"
        case .tcp: "tcp"
        case .tls: "tls"
        case .dtls: "dtls"
        }
    }

    static func session(_ j: inout JSONWriter, worker: Int, _ s: AllocationSnapshot, realm: String) {
        j.object { o in
            o.string("id", sessionID(worker: worker, s.id))
            o.number("worker", worker)
            o.string("user", s.username)
            o.string("realm", realm)
            o.string("transport", transportName(s.fiveTuple.transport))
            o.string("client", s.fiveTuple.client.description)
            o.string("server", s.fiveTuple.server.description)
            o.string("relay_transport", s.relayTransport == .tcp ? "tcp" : "udp")
            o.array("relayed") { a in
                for r in [s.relayV4, s.relayV6].compactMap({ $0 }) { a.element(r.description) }
            }
            o.array("permissions") { a in
                for p in s.permissions {
                    a.object { e in
                        e.string("peer", p.peer.description)
                        e.number("expires_in", p.expiresIn)
                    }
                }
            }
            o.array("channels") { a in
                for c in s.channels {
                    a.object { e in
                        e.number("number", c.number)
                        e.string("peer", c.peer.description)
                        e.number("expires_in", c.expiresIn)
                    }
                }
            }
            o.number("age_seconds", s.ageSeconds)
            o.number("expires_in", s.expiresIn)
            o.object("to_peer") { e in
                e.number("packets", s.counters.packetsToPeer)
                e.number("bytes", s.counters.bytesToPeer)
            }
            o.object("to_client") { e in
                e.number("packets", s.counters.packetsToClient)
                e.number("bytes", s.counters.bytesToClient)
            }
        }
    }

    /// `{"sessions": [...], "workers_missing": [...]}` (key "ended" for a disconnect).
    static func sessions(_ result: AdminResult, realm: String, key: String = "sessions") -> String {
        var j = JSONWriter()
        j.object { o in
            o.array(key) { a in
                for answer in result.answers {
                    for s in answer.sessions { session(&a, worker: answer.worker, s, realm: realm) }
                }
            }
            o.array("workers_missing") { a in for w in result.missing { a.element(w) } }
        }
        return j.text + "\n"
    }

    /// What `GET /v1/info` answers.
    struct Info {
        var version: String
        var backend: String
        var workers: Int
        var uptimeSeconds: Int
        var draining: Bool
        var allocations: UInt64
        var realm: String
        var config: [String]
    }

    static func info(_ i: Info) -> String {
        var j = JSONWriter()
        j.object { o in
            o.string("version", i.version)
            o.string("backend", i.backend)
            o.number("workers", i.workers)
            o.number("uptime_seconds", i.uptimeSeconds)
            o.bool("draining", i.draining)
            o.number("allocations", i.allocations)
            o.string("realm", i.realm)
            o.array("config") { a in for line in i.config { a.element(line) } }
        }
        return j.text + "\n"
    }

    /// `{"error": "..."}` or `{"status": "..."}`.
    static func message(_ key: String, _ text: String) -> String {
        var j = JSONWriter()
        j.object { $0.string(key, text) }
        return j.text + "\n"
    }
}
