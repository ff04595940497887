import STUN
import TURN
import Testing
import UturndCore

@Suite("Request limits and alternate servers")
struct AbuseSettingsTests {
    @Test func defaultsAndTheTotalSharedByWorkers() throws {
        let s = try settings(["--user", "a:b", "--workers", "4"])
        #expect(s.turn.sourceLimits == SourceRateLimits(failedPerSecond: 200, bindingPerSecond: 200, failedTotalPerSecond: 5000))
        #expect(s.turn.alternates.servers.isEmpty)
        let off = try settings([
            "--user", "a:b", "--failed-request-rate", "0", "--binding-request-rate", "0", "--failed-request-rate-total", "0",
        ])
        #expect(off.turn.sourceLimits.isOff)
    }

    @Test func alternateAddressesAndPolicies() throws {
        let s = try settings([
            "--user", "a:b", "--alternate-server", "192.0.2.7", "--alternate-server", "192.0.2.8:3479",
            "--alternate-server", "[2001:db8::7]:3480", "--alternate-server", "2001:db8::8",
            "--alternate-server-policy", "allocations:50",
        ])
        #expect(
            s.turn.alternates.servers == [
                TransportAddress("192.0.2.7:3478")!, TransportAddress("192.0.2.8:3479")!,
                TransportAddress("[2001:db8::7]:3480")!, TransportAddress("[2001:db8::8]:3478")!,
            ])
        #expect(s.turn.alternates.policy == .allocations(50))
        #expect(s.summary.contains { $0.hasPrefix("alternate servers (allocations:50): 192.0.2.7:3478") })
    }

    @Test func badValuesAreRefusedByName() {
        #expect(problem(["--user", "a:b", "--alternate-server", "example.org"])?.contains("--alternate-server") == true)
        #expect(problem(["--user", "a:b", "--alternate-server", "192.0.2.7:0"])?.contains("--alternate-server") == true)
        #expect(problem(["--user", "a:b", "--alternate-server-policy", "sometimes"])?.contains("--alternate-server-policy") == true)
        #expect(problem(["--user", "a:b", "--failed-request-rate", "-1"])?.contains("--failed-request-rate") == true)
    }
}

@Suite("Several relay addresses per family")
struct RelayAddressSettingsTests {
    @Test func relayIPsPerFamilyInOrder() throws {
        let s = try settings([
            "--user", "a:b", "--relay-ip", "127.0.0.2", "--relay-ip", "::1", "--relay-ip", "127.0.0.3",
        ])
        #expect(s.engine.relayIPsV4 == [IPAddress("127.0.0.2")!, IPAddress("127.0.0.3")!])
        #expect(s.engine.relayIPsV6 == [IPAddress("::1")!])
        #expect(s.engine.relayIPv4 == IPAddress("127.0.0.2"))
        #expect(s.turn.relayFamilies == [.v4, .v6])
    }
}

@Suite("--kernel-source-filter")
struct KernelSourceFilterSettingsTests {
    @Test func autoByDefaultAndEachModeByName() throws {
        #expect(try settings(["--user", "a:b"]).engine.kernelSourceFilter == .auto)
        #expect(try settings(["--user", "a:b", "--kernel-source-filter", "on"]).engine.kernelSourceFilter == .on)
        let off = try settings(["--user", "a:b", "--kernel-source-filter", "off"])
        #expect(off.engine.kernelSourceFilter == .off)
        #expect(off.summary.contains { $0.hasPrefix("request limits per source") && $0.hasSuffix("kernel source filter off") })
        #expect(problem(["--user", "a:b", "--kernel-source-filter", "yes"])?.contains("--kernel-source-filter yes must be off, auto or on") == true)
    }

    @Test func worksInTheConfigFile() throws {
        let file = try ConfigFile(path: "t.conf", text: "kernel-source-filter=off\n")
        #expect(file.arguments == ["--kernel-source-filter=off"])
        #expect(try settings(["--user", "a:b"] + file.arguments).engine.kernelSourceFilter == .off)
    }
}
