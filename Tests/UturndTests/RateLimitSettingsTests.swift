import ArgumentParser
import Relay
import STUN
import TURN
import Testing
import UturndCore

@Suite("Traffic limit flags")
struct RateLimitSettingsTests {
    let base = ["--user", "demo:demo-password"]

    @Test func flagsReachTheConfiguration() throws {
        let s = try settings(
            base + [
                "--max-bps", "100000", "--bps-capacity", "1000000", "--bps-capacity-policy", "share",
                "--user-max-bps", "300000", "--max-pps", "500", "--max-new-peers-per-second", "4",
            ])
        let r = s.turn.rateLimits
        #expect(r.maxBytesPerSecond == 100_000 && r.capacityBytesPerSecond == 1_000_000 && r.capacityPolicy == .share)
        #expect(r.userMaxBytesPerSecond == 300_000 && r.maxPacketsPerSecond == 500 && r.maxNewPeersPerSecond == 4)
        #expect(s.summary.contains { $0.hasPrefix("traffic limits") })
        // share reserves nothing: no total quota from the capacity.
        #expect(s.makeQuotas().total == 0)
    }

    @Test func refuseTurnsTheCapacityIntoAnAllocationQuota() throws {
        let s = try settings(base + ["--max-bps", "100000", "--bps-capacity", "250000"])
        #expect(s.turn.rateLimits.capacityPolicy == .refuse)
        #expect(s.makeQuotas().total == 2)
        let q = try settings(base + ["--max-bps", "100000", "--bps-capacity", "250000", "--total-quota", "1"])
        #expect(q.makeQuotas().total == 1)
    }

    @Test func badValuesAreRefused() {
        #expect(throws: ValidationError.self) { try settings(base + ["--max-bps=-1"]) }
        #expect(throws: ValidationError.self) { try settings(base + ["--bps-capacity-policy", "drop"]) }
        #expect(throws: ValidationError.self) {
            try settings(base + ["--max-bps", "200000", "--bps-capacity", "100000"])
        }
    }

    @Test func limitsTurnOffloadOff() throws {
        let s = try settings(base + ["--max-pps", "100", "--offload", "auto"])
        #expect(s.engine.offload == .off)
        #expect(s.warnings.contains { $0.contains("--offload auto is ignored") })
        let t = try settings(base + ["--offload", "auto"])
        #expect(t.engine.offload == .auto)
    }
}
