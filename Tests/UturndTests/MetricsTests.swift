import Glibc
import STUN
import Testing
import UturndCore

/// The exposition text, parsed just enough to check it: samples by series
/// (`name{labels}` as written), and HELP/TYPE lines by family.
struct Exposition {
    var samples: [String: String] = [:]
    var help: [String: [String]] = [:]
    var type: [String: [String]] = [:]
    /// Family names in the order their first line appears, and the family of each line.
    var lineFamilies: [String] = []

    init(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let rest = line.dropFirst(7)
                let name = String(rest.prefix { $0 != " " })
                let value = String(rest.dropFirst(name.count + 1))
                if line.hasPrefix("# HELP ") { help[name, default: []].append(value) } else { type[name, default: []].append(value) }
                lineFamilies.append(name)
                continue
            }
            let space = line.lastIndex(of: " ")!
            let series = String(line[..<space])
            samples[series] = String(line[line.index(after: space)...])
            lineFamilies.append(String(series.prefix { $0 != "{" }))
        }
    }

    subscript(_ series: String) -> Double? { samples[series].flatMap(Double.init) }
}

func fakeWorkers() -> [[String: UInt64]] {
    [
        [
            "packetsToPeers": 5, "bytesToPeers": 500, "packetsToClients": 7, "bytesToClients": 800,
            "packetsFromClients": 9, "bytesFromClients": 900, "packetsFromPeers": 7, "bytesFromPeers": 700,
            "allocationsCreated": 4, "allocationsDeleted": 1, "allocationsExpired": 1,
            "dropsNoRoute": 2, "dropsMalformed": 1, "stunRequests": 11,
            "completions": 100, "batches": 10, "sendCalls": 6, "datagramsSent": 12, "gsoSends": 3,
            "enobufs": 1, "receiveRearms": 1, "sqFull": 0, "groTrains": 2, "groDatagrams": 8,
            "someFutureCounter": 99,
        ],
        [
            "packetsToPeers": 1, "bytesToPeers": 20, "allocationsCreated": 1,
            "dropsNoRoute": 3, "completions": 40, "batches": 20,
        ],
    ]
}

@Suite("Prometheus exposition")
struct MetricsExpositionTests {
    @Test func valuesSummedAndPerWorker() {
        let m = MetricsExposition(workers: 2, version: "0.1.0", startTime: 1_764_180_000.5)
        let e = Exposition(m.render(MetricsSample(workers: fakeWorkers())))
        #expect(e[#"uturn_relayed_packets_total{direction="client_to_peer"}"#] == 6)
        #expect(e[#"uturn_relayed_packets_total{direction="peer_to_client"}"#] == 7)
        #expect(e[#"uturn_relayed_bytes_total{direction="client_to_peer"}"#] == 520)
        #expect(e[#"uturn_relayed_bytes_total{direction="peer_to_client"}"#] == 800)
        #expect(e[#"uturn_received_packets_total{source="client"}"#] == 9)
        #expect(e[#"uturn_received_bytes_total{source="peer"}"#] == 700)
        #expect(e[#"uturn_dropped_packets_total{reason="no_route"}"#] == 5)
        #expect(e[#"uturn_dropped_packets_total{reason="malformed"}"#] == 1)
        #expect(e[#"uturn_dropped_packets_total{reason="send_error"}"#] == 0)
        #expect(e["uturn_stun_requests_total"] == 11)
        #expect(e["uturn_allocations_created_total"] == 5)
        #expect(e["uturn_allocations_deleted_total"] == 1)
        #expect(e["uturn_allocations_expired_total"] == 1)
        #expect(e["uturn_allocations_active"] == 3)
        #expect(e[#"uturn_ring_completions_total{worker="0"}"#] == 100)
        #expect(e[#"uturn_ring_completions_total{worker="1"}"#] == 40)
        #expect(e[#"uturn_ring_batches_total{worker="1"}"#] == 20)
        #expect(e[#"uturn_send_calls_total{worker="0"}"#] == 6)
        #expect(e[#"uturn_sent_datagrams_total{worker="0"}"#] == 12)
        #expect(e[#"uturn_gso_sends_total{worker="0"}"#] == 3)
        #expect(e[#"uturn_gro_trains_total{worker="0"}"#] == 2)
        #expect(e[#"uturn_gro_datagrams_total{worker="0"}"#] == 8)
        #expect(e[#"uturn_receive_enobufs_total{worker="0"}"#] == 1)
        #expect(e[#"uturn_receive_rearms_total{worker="1"}"#] == 0)
        #expect(e[#"uturn_ring_sq_full_total{worker="0"}"#] == 0)
        #expect(e[#"uturn_build_info{version="0.1.0"}"#] == 1)
        #expect(e["uturn_process_start_time_seconds"] == 1_764_180_000.5)
        #expect(e["uturn_workers"] == 2)
        // Per-worker families have one series per worker and no sum.
        #expect(e.samples.keys.filter { $0.hasPrefix("uturn_ring_completions_total") }.count == 2)
        // Unknown engine counters are not exposed.
        #expect(!e.samples.values.contains("99"))
    }

    @Test func helpAndTypeOncePerFamilyBeforeItsSamples() {
        let m = MetricsExposition(workers: 3, version: "0.1.0", startTime: 0)
        let text = m.render(MetricsSample(workers: fakeWorkers()))
        #expect(text.hasSuffix("\n"))
        let e = Exposition(text)
        let families = Set(e.lineFamilies)
        #expect(families.count >= 23)
        for family in families {
            #expect(family.hasPrefix("uturn_"), "\(family)")
            #expect(e.help[family]?.count == 1, "\(family): one HELP line")
            #expect(e.type[family]?.count == 1, "\(family): one TYPE line")
            let type = e.type[family]?.first ?? ""
            #expect(type == "counter" || type == "gauge", "\(family)")
            #expect((type == "counter") == family.hasSuffix("_total"), "\(family): counters, and only they, end in _total")
            if type == "counter" { #expect(e.help[family]?.first?.contains("lag by up to 1 s") == true, "\(family)") }
            // A family's lines are contiguous: HELP, TYPE, then its samples.
            let lines = e.lineFamilies.indices.filter { e.lineFamilies[$0] == family }
            #expect(lines == Array(lines.first!...lines.last!), "\(family): lines together")
        }
        // Workers beyond the sample's read as 0 (three declared, two given).
        #expect(e[#"uturn_ring_completions_total{worker="2"}"#] == 0)
    }

    @Test func labelValuesEscaped() {
        let m = MetricsExposition(workers: 1, version: "1.0 \"beta\"\\x\ny", startTime: 0)
        let text = m.render(MetricsSample(workers: [[:]]))
        #expect(text.contains(#"uturn_build_info{version="1.0 \"beta\"\\x\ny"} 1"#))
        #expect(!text.contains("\ny\"}"))
    }

    @Test func renderReplacesValuesAndClampsActive() {
        let m = MetricsExposition(workers: 1, version: "0.1.0", startTime: 0)
        _ = m.render(MetricsSample(workers: [["packetsToPeers": 10, "allocationsCreated": 2]]))
        // Totals as published are copied, not added to the previous scrape's.
        let e = Exposition(
            m.render(MetricsSample(workers: [["packetsToPeers": 12, "allocationsCreated": 2, "allocationsExpired": 3]])))
        #expect(e[#"uturn_relayed_packets_total{direction="client_to_peer"}"#] == 12)
        // Counters read one by one may show more ended than created: never negative.
        #expect(e["uturn_allocations_active"] == 0)
    }
}

/// One HTTP exchange over a plain blocking socket: the status line and body.
func httpExchange(_ port: UInt16, _ request: String) -> (status: String, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return nil }
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { break }
        sent += n
    }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &chunk, chunk.count, 0)
        guard n > 0 else { break }
        response += chunk[0..<n]
    }
    let status = String(decoding: response.prefix { $0 != 13 }, as: UTF8.self)
    guard response.count >= 4,
        let end = (0...(response.count - 4)).first(where: { Array(response[$0..<$0 + 4]) == [13, 10, 13, 10] })
    else { return (status, "") }
    return (status, String(decoding: response[(end + 4)...], as: UTF8.self))
}

@Suite("Metrics HTTP endpoint")
struct MetricsServerTests {
    @Test func servesMetricsAndRefusesTheRest() throws {
        let server = try MetricsServer(listen: TransportAddress("127.0.0.1:0")!) { "uturn_up 1\n" }
        defer { server.stop() }
        let port = server.address.port
        #expect(port != 0)

        let ok = httpExchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(ok?.status == "HTTP/1.1 200 OK")
        #expect(ok?.body == "uturn_up 1\n")
        #expect(httpExchange(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n")?.status == "HTTP/1.1 200 OK")
        #expect(httpExchange(port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")?.status == "HTTP/1.1 404 Not Found")
        #expect(httpExchange(port, "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?.status == "HTTP/1.1 405 Method Not Allowed")
        #expect(httpExchange(port, "GARBAGE\r\n\r\n")?.status.hasPrefix("HTTP/1.1 400") == true)
        // Larger than the limit: the connection is closed without an answer.
        let huge = "GET /metrics HTTP/1.1\r\nX-Fill: " + String(repeating: "a", count: MetricsServer.maxRequestBytes) + "\r\n\r\n"
        #expect(httpExchange(port, huge)?.status.hasPrefix("HTTP/1.1 200") != true)
        // And it still serves afterwards.
        #expect(httpExchange(port, "GET /metrics HTTP/1.1\r\n\r\n")?.status == "HTTP/1.1 200 OK")
    }

    @Test func takenPortIsAnError() throws {
        let first = try MetricsServer(listen: TransportAddress("127.0.0.1:0")!) { "" }
        defer { first.stop() }
        #expect(throws: MetricsServerError.self) {
            try MetricsServer(listen: TransportAddress(ip: IPAddress("127.0.0.1")!, port: first.address.port)) { "" }
        }
    }
}

@Suite("--metrics-listen")
struct MetricsOptionTests {
    @Test func parsedAndValidated() throws {
        #expect(try settings(["--user", "a:b"]).metricsListen == nil)
        #expect(try settings(["--user", "a:b", "--metrics-listen", "127.0.0.1:9641"]).metricsListen
            == TransportAddress("127.0.0.1:9641"))
        let v6 = try settings(["--user", "a:b", "--metrics-listen", "[::1]:9641"])
        #expect(v6.metricsListen == TransportAddress("[::1]:9641"))
        #expect(v6.summary.contains("metrics: http://[::1]:9641/metrics"))
        for bad in ["9641", "localhost:9641", "127.0.0.1:0", "127.0.0.1:70000", "224.0.0.1:9641"] {
            let message = problem(["--user", "a:b", "--metrics-listen", bad])
            #expect(message?.contains("--metrics-listen") == true, "\(bad): \(message ?? "accepted")")
        }
    }
}
