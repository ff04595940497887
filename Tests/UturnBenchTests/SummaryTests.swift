import Foundation
import Testing

@testable import BenchCore

@Suite struct SummaryAndOptionsTests {
    @Test func medianAndLoss() {
        #expect(BenchSummary.median([]) == 0)
        #expect(BenchSummary.median([3, 1, 2]) == 2)
        #expect(BenchSummary.median([4, 1, 3, 2]) == 2.5)
        #expect(BenchSummary.loss(sent: 0, received: 0) == 0)
        #expect(BenchSummary.loss(sent: 200, received: 150) == 25)
        #expect(BenchSummary.loss(sent: 10, received: 12) == 0)
    }

    func sample() -> BenchSummary {
        BenchSummary(
            mode: "flood", sessions: 2, payloadBytes: 120, durationSeconds: 3, roundTripsPerSecond: 12345,
            sent: 40000, received: 39000, lossPercent: 2.5, latencyP50Micros: 80.5, latencyP99Micros: 310,
            latencyP999Micros: 900, malformed: 0, relayCPUMicrosPerRoundTrip: 4.25, perSecond: [12000, 12345, 13000])
    }

    @Test func textRendering() {
        let t = sample().text
        #expect(t.contains("uturn-bench flood: 2 sessions, 120-byte payloads, 3.0 s window"))
        #expect(t.contains("round trips/s (median)   12345.0"))
        #expect(t.contains("sent                     40000"))
        #expect(t.contains("received                 39000"))
        #expect(t.contains("loss                     2.500 %"))
        #expect(t.contains("latency p50/p99/p99.9    80.5 / 310.0 / 900.0 µs"))
        #expect(t.contains("relay CPU per round trip 4.25 µs"))
        #expect(!t.contains("allocations/s"))
    }

    @Test func allocTextRendering() {
        let s = BenchSummary(
            mode: "alloc", sessions: 1, payloadBytes: 120, durationSeconds: 2, allocationsPerSecond: 950,
            allocationFailures: 1)
        #expect(s.text.contains("allocations/s (median)   950.0"))
        #expect(s.text.contains("allocation failures      1"))
    }

    @Test func jsonRoundTrip() throws {
        let s = sample()
        let data = try s.json()
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["roundTripsPerSecond"] as? Double == 12345)
        #expect(object["sent"] as? Int == 40000)
        #expect(object["latencyP999Micros"] as? Double == 900)
        #expect(object["relayCPUMicrosPerRoundTrip"] as? Double == 4.25)
        #expect(object["allocationsPerSecond"] == nil)
        #expect(try JSONDecoder().decode(BenchSummary.self, from: data) == s)
    }

    @Test func optionsParse() throws {
        let o = try BenchOptions(arguments: [
            "rate", "--server", "127.0.0.1:40000", "--sessions", "4", "--rate", "500", "--payload", "200",
            "--duration", "2.5", "--warmup", "0", "--cpu", "0", "--relay-pid", "123", "--json", "/tmp/x.json",
            "--peer-port", "41000",
        ])
        #expect(o.mode == .rate && o.sessions == 4 && o.rate == 500 && o.payload == 200)
        #expect(o.duration == 2.5 && o.warmup == 0 && o.cpu == 0 && o.relayPID == 123)
        #expect(o.server?.port == 40000 && o.peerPort == 41000 && o.jsonPath == "/tmp/x.json")
        #expect(throws: BenchOptionsError.self) { try BenchOptions(arguments: ["flood"]) }
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1", "--payload", "8"])
        }
        #expect(throws: BenchOptionsError.self) { try BenchOptions(arguments: ["--bogus", "--server", "127.0.0.1:1"]) }
    }
}

@Suite struct InvalidSummaryAndOptionsTests {
    func sample() -> BenchSummary {
        var s = BenchSummary(
            mode: "invalid", sessions: 1, payloadBytes: 120, durationSeconds: 2, roundTripsPerSecond: 50, sent: 100,
            received: 99, lossPercent: 1, latencyP50Micros: 90, latencyP99Micros: 200, latencyP999Micros: 300)
        s.invalid = InvalidSummary(
            junkRate: 900, legitRate: 50,
            kinds: [
                InvalidKindSummary(kind: "bad-cookie", sent: 200),
                InvalidKindSummary(kind: "unauthenticated-allocate", sent: 200, errors: ["401": 199]),
                InvalidKindSummary(
                    kind: "attribute-past-end", sent: 200, success: 150, errors: ["400": 20, "0": 1], other: 2),
            ], relayCPUMicrosPerJunkPacket: 3.5)
        return s
    }

    @Test func noAnswerIsSentMinusEveryAnswer() {
        let k = sample().invalid!.kinds
        #expect(k[0].noAnswer == 200)
        #expect(k[1].noAnswer == 1)
        #expect(k[2].noAnswer == 200 - 150 - 21 - 2)
        // More answers than packets (a server answering twice) never underflows.
        #expect(InvalidKindSummary(kind: "x", sent: 1, success: 3).noAnswer == 0)
        #expect(sample().invalid!.junkSent == 600)
    }

    @Test func invalidTextRendering() {
        let t = sample().text
        #expect(t.contains("--- uturn-bench invalid: 1 sessions, 120-byte payloads, 2.0 s window"))
        #expect(t.contains("junk: 900 packets/s over 3 kinds, 600 sent in the window"))
        let row = t.split(separator: "\n").first { $0.hasPrefix("unauthenticated-allocate") }.map(String.init) ?? ""
        #expect(row.split(separator: " ") == ["unauthenticated-allocate", "200", "0", "0", "1", "401:199"])
        let row2 = t.split(separator: "\n").first { $0.hasPrefix("attribute-past-end") }.map(String.init) ?? ""
        #expect(row2.hasSuffix("0:1 400:20"))
        #expect(t.contains("legitimate session, one channel at 50 packets/s during the junk:"))
        #expect(t.contains("  loss                   1.000 %"))
        #expect(t.contains("relay CPU per junk packet 3.50 µs"))
        #expect(!t.contains("round trips/s (median)"))
    }

    @Test func invalidJSON() throws {
        let s = sample()
        let object = try #require(try JSONSerialization.jsonObject(with: try s.json()) as? [String: Any])
        let invalid = try #require(object["invalid"] as? [String: Any])
        let kinds = try #require(invalid["kinds"] as? [[String: Any]])
        #expect(kinds.count == 3)
        #expect(kinds[1]["kind"] as? String == "unauthenticated-allocate")
        #expect((kinds[1]["errors"] as? [String: Any])?["401"] as? Int == 199)
        #expect(kinds[1]["noAnswer"] as? Int == 1)
        #expect(invalid["relayCPUMicrosPerJunkPacket"] as? Double == 3.5)
        #expect(try JSONDecoder().decode(BenchSummary.self, from: try s.json()) == s)
    }

    @Test func invalidOptions() throws {
        let o = try BenchOptions(arguments: [
            "invalid", "--server", "127.0.0.1:40000", "--rate", "5000", "--kinds", "bad-cookie,wrong-integrity",
            "--legit-rate", "20", "--seed", "42",
        ])
        #expect(o.mode == .invalid && o.rate == 5000 && o.legitRate == 20 && o.seed == 42)
        #expect(o.kinds == [.badCookie, .wrongIntegrity])
        #expect(try BenchOptions(arguments: ["invalid", "--server", "127.0.0.1:1"]).kinds == InvalidKind.allCases)
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["invalid", "--server", "127.0.0.1:1", "--kinds", "nope"])
        }
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["invalid", "--server", "127.0.0.1:1", "--legit-rate", "0"])
        }
        #expect(try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1", "--no-turn"]).noTurn)
        let trains = try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1", "--gso", "32", "--gro"])
        #expect(trains.gso == 32 && trains.gro && trains.harness == "gso+gro")
        #expect(try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1", "--gro"]).harness == "gro")
        #expect(try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1"]).harness == "single")
        for bad in [["--gso", "65"], ["--gso", "0"], ["--gso", "64", "--payload", "1400"]] {
            #expect(throws: BenchOptionsError.self) {
                try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1"] + bad)
            }
        }
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["alloc", "--server", "127.0.0.1:1", "--gro"])
        }
        let counted = try BenchOptions(arguments: ["rate", "--server", "127.0.0.1:1", "--count", "7", "--warmup", "3"])
        #expect(counted.count == 7 && counted.warmup == 0)
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["alloc", "--server", "127.0.0.1:1", "--count", "7"])
        }
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["flood", "--server", "127.0.0.1:1", "--count", "0"])
        }
        #expect(throws: BenchOptionsError.self) {
            try BenchOptions(arguments: ["alloc", "--server", "127.0.0.1:1", "--no-turn"])
        }
    }
}
