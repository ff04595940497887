import CFastPath
import Glibc
import STUN
import TURN
import Testing
import URing

@testable import Relay

/// The kernel source filter's map keys: the exact bytes the BPF program
/// builds from a datagram (source_filter_maps.h).
@Suite struct SourceFilterKeyTests {
    @Test func ipv4KeyHoldsAddressAndPortsInNetworkOrder() {
        let key = SourceFilterPart.key(client: TransportAddress("192.0.2.7:40000")!, listenPort: 3479)
        #expect(key.family == UInt8(FP_FAMILY_V4))
        #expect(UInt32(bigEndian: key.source_ip.0) == 0xC000_0207)
        #expect(key.source_ip.1 == 0 && key.source_ip.2 == 0 && key.source_ip.3 == 0)
        #expect(UInt16(bigEndian: key.source_port) == 40000)
        #expect(UInt16(bigEndian: key.listen_port) == 3479)
        #expect(key.pad.0 == 0 && key.pad.1 == 0 && key.pad.2 == 0)
        #expect(MemoryLayout<sf_key>.size == 24)
    }

    @Test func anIPv4MappedClientIsKeyedAsTheIPv4ItIsOnTheWire() {
        let mapped = SourceFilterPart.key(client: TransportAddress("[::ffff:192.0.2.7]:40000")!, listenPort: 3479)
        let plain = SourceFilterPart.key(client: TransportAddress("192.0.2.7:40000")!, listenPort: 3479)
        #expect(SourceFilterPart.same(mapped, plain))
    }

    @Test func ipv6KeyHoldsAllSixteenBytes() {
        let key = SourceFilterPart.key(client: TransportAddress("[2001:db8::1:2]:5000")!, listenPort: 3479)
        #expect(key.family == UInt8(FP_FAMILY_V6))
        #expect(UInt32(bigEndian: key.source_ip.0) == 0x2001_0DB8)
        #expect(key.source_ip.1 == 0 && key.source_ip.2 == 0)
        #expect(UInt32(bigEndian: key.source_ip.3) == 0x0001_0002)
        // Another port, or another listening port, is another key.
        let otherPort = SourceFilterPart.key(client: TransportAddress("[2001:db8::1:2]:5001")!, listenPort: 3479)
        let otherListener = SourceFilterPart.key(client: TransportAddress("[2001:db8::1:2]:5000")!, listenPort: 3480)
        #expect(!SourceFilterPart.same(key, otherPort))
        #expect(!SourceFilterPart.same(key, otherListener))
    }

    @Test func aFiveTupleIsBlockedOnItsSecondDropAndOnlyOncePerBlock() {
        var part = SourceFilterPart(maps: nil)
        let key = SourceFilterPart.key(client: TransportAddress("192.0.2.7:40000")!, listenPort: 3479)
        let t0 = MonotonicTime(nanoseconds: 5_000_000_000)
        let first = part.decide(key, nanoseconds: 200_000_000, now: t0)
        #expect(first == .noted)
        let t1 = MonotonicTime(nanoseconds: t0.nanoseconds + 1_000)
        let second = part.decide(key, nanoseconds: 200_000_000, now: t1)
        #expect(second == .block(until: t1.nanoseconds + 200_000_000))
    }

    @Test func aFloodThatNeverRepeatsAFiveTupleWritesNothing() {
        var part = SourceFilterPart(maps: nil)
        let now = MonotonicTime(nanoseconds: 5_000_000_000)
        var blocks = 0
        for port in 0..<5000 {
            let key = SourceFilterPart.key(
                client: TransportAddress(ip: IPAddress(v4: 0xC000_0207), port: UInt16(10000 + port)), listenPort: 3479)
            if case .block = part.decide(key, nanoseconds: 200_000_000, now: now) { blocks += 1 }
        }
        #expect(blocks == 0)
    }

    @Test func aDropLongAfterTheFirstStartsOver() {
        var part = SourceFilterPart(maps: nil)
        let key = SourceFilterPart.key(client: TransportAddress("192.0.2.7:40000")!, listenPort: 3479)
        let t0 = MonotonicTime(nanoseconds: 5_000_000_000)
        _ = part.decide(key, nanoseconds: 1_000_000, now: t0)
        let later = MonotonicTime(nanoseconds: t0.nanoseconds + SourceFilterPart.repeatWindow + 1)
        let decision = part.decide(key, nanoseconds: 1_000_000, now: later)
        #expect(decision == .noted)
    }

    @Test func aBlockOfEverythingCoversOneOfWhatIsNotSTUNAndNotTheOtherWayRound() {
        #expect(SourceFilterPart.Scope.all.covers(.notSTUN))
        #expect(SourceFilterPart.Scope.all.covers(.all))
        #expect(SourceFilterPart.Scope.notSTUN.covers(.notSTUN))
        #expect(!SourceFilterPart.Scope.notSTUN.covers(.all))
        // The raw values are the filter's enum sf_scope.
        #expect(SourceFilterPart.Scope.all.rawValue == SF_SCOPE_ALL.rawValue)
        #expect(SourceFilterPart.Scope.notSTUN.rawValue == SF_SCOPE_NOT_STUN.rawValue)
    }

    @Test func theSTUNHeaderTestIsTheFiltersOne() {
        func starts(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { SourceFilterPart.startsWithSTUNHeader($0) } }
        let binding = TURNClient().request(.binding, sign: false)
        #expect(starts(binding))
        // Its header alone (20 bytes) is enough; 19 bytes is not.
        #expect(starts(Array(binding.prefix(20))))
        #expect(!starts(Array(binding.prefix(19))))
        // Another cookie (an RFC 3489 message), ChannelData, or a top bit set: not STUN.
        var oldCookie = binding
        oldCookie[4] ^= 0xFF
        #expect(!starts(oldCookie))
        #expect(!starts([0x40, 0x00, 0x00, 0x10] + [UInt8](repeating: 7, count: 16) + Array(binding[4..<8])))
        var topBit = binding
        topBit[0] |= 0x80
        #expect(!starts(topBit))
        #expect(!starts([]))
    }

    @Test func withTheFilterOffNothingIsWritten() {
        var part = SourceFilterPart(maps: nil)
        let enabled = part.enabled
        #expect(!enabled)
        let key = SourceFilterPart.key(client: TransportAddress("192.0.2.7:40000")!, listenPort: 3479)
        let written = part.block(key, nanoseconds: 1_000_000, now: MonotonicTime(nanoseconds: 1))
        #expect(!written)
    }
}

/// A real engine with `--kernel-source-filter`, junk from one socket on
/// 127.0.0.1. Needs root (CAP_BPF); skipped without.
@Suite("Kernel source filter on loopback", .serialized, .enabled(if: getuid() == 0, "needs root for BPF"))
struct SourceFilterEngineTests {
    static func harness(_ mode: KernelSourceFilterMode, failedRate: UInt64 = 1, ipv6: Bool = false) throws
        -> EngineHarness
    {
        try EngineHarness(
            ipv6: ipv6, configure: { $0.kernelSourceFilter = mode },
            configureTURN: { $0.sourceLimits = SourceRateLimits(failedPerSecond: failedRate) })
    }

    /// Sends `packet` from `socket` in rounds of 50 every 20 ms until the
    /// kernel filter has dropped something (20 rounds at most).
    static func sendUntilTheKernelDrops(_ packet: [UInt8], from socket: TestSocket, _ h: EngineHarness) throws {
        var rounds = 0
        while (h.engine.kernelSourceDrops ?? 0) == 0 && rounds < 20 {
            for _ in 0..<50 { try socket.send(packet, to: h.server) }
            usleep(20_000)
            rounds += 1
        }
    }

    static func unsignedAllocate() -> [UInt8] {
        TURNClient().request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
    }

    @Test(
        "a source over its limit is dropped in the kernel; another port of the same address is answered",
        arguments: [false, true])
    func junkIsDroppedInTheKernel(ipv6: Bool) throws {
        let h = try Self.harness(.on, ipv6: ipv6)
        #expect(h.logs.all.contains { $0.contains("kernel source filter: on") })
        let junk = try TestSocket(ipv6: ipv6)
        try junk.socket.setReceiveTimeout(.milliseconds(200))
        // 1 refusal/s, burst 2: the third request is dropped and blocks the
        // source for up to a second. Rounds until the kernel has dropped some.
        let start = Worker.monotonicNow()
        try Self.sendUntilTheKernelDrops(Self.unsignedAllocate(), from: junk, h)
        #expect((h.engine.kernelSourceDrops ?? 0) > 0)
        var answers = 0
        while try junk.receive() != nil { answers += 1 }
        let seconds = (Worker.monotonicNow().nanoseconds - start.nanoseconds) / 1_000_000_000
        // The burst and a token a second (and one for a second begun): what
        // the limiter allows, with the filter in front of it.
        #expect(answers >= 2 && answers <= 2 + Int(seconds) + 1, "answers \(answers) in \(seconds) s")
        // The same address on another port is another key: still answered
        // (its bucket is the address's, so it may be dropped in user space;
        // a Binding has a bucket of its own and is answered).
        let other = try TestSocket(ipv6: ipv6)
        try other.send(TURNClient().request(.binding, sign: false), to: h.server)
        #expect(try other.receive() != nil)
    }

    @Test(
        "a 5-tuple sending ChannelData with no allocation loses it in the kernel, not its requests; its allocation lifts the block",
        arguments: [false, true])
    func unansweredDatagramsAreDroppedInTheKernelUntilAnAllocation(ipv6: Bool) throws {
        let h = try Self.harness(.on, ipv6: ipv6)
        let client = try TestSocket(ipv6: ipv6)
        let peer = try TestSocket(ipv6: ipv6)
        let stray = EngineRelayTests.channelData(0x4000, [UInt8](repeating: 0xAB, count: 100))
        // 1 datagram/s of this kind, burst 2: the fourth blocks the 5-tuple
        // for up to a second. Rounds until the kernel has dropped some.
        try Self.sendUntilTheKernelDrops(stray, from: client, h)
        #expect((h.engine.kernelSourceDrops ?? 0) > 0)
        // The block is in force: one more stray datagram is dropped in the kernel.
        let before = h.engine.kernelSourceDrops ?? 0
        try client.send(stray, to: h.server)
        for _ in 0..<100 where (h.engine.kernelSourceDrops ?? 0) == before { usleep(2_000) }
        #expect((h.engine.kernelSourceDrops ?? 0) == before + 1)
        // Its requests still pass (the 401, then the allocation), and the
        // allocation lifts the block: ChannelData flows both ways at once,
        // well inside the second the block would have lasted.
        var tc = TURNClient()
        let relayed = try EngineRelayTests.allocate(
            h, client: client, tc: &tc, peer: peer.address, channel: 0x4000, family: ipv6 ? .v6 : .v4)
        try EngineRelayTests.roundTrip(h, client: client, peer: peer, relayed: relayed, channel: 0x4000, [1, 2, 3, 4])
        // (Counted once the workers publish their counters.)
        FastPathTests.waitForCounters(h) { $0.engine.counter("kernelSourceBlocks") ?? 0 > 0 }
        #expect(h.engine.counter("kernelSourceBlocks") ?? 0 > 0)
    }

    @Test("a reload that turns the limits off stops new blocks: a new junk source is answered in full")
    func reloadTurningTheLimitsOffStopsBlocking() throws {
        let h = try Self.harness(.on)
        var off = h.turn
        off.sourceLimits = SourceRateLimits()
        h.engine.reload(turn: off)
        for _ in 0..<200 where !h.logs.all.contains(where: { $0.contains("new configuration in force") }) {
            usleep(10_000)
        }
        #expect(h.logs.all.contains { $0.contains("new configuration in force") })
        let junk = try TestSocket()
        var answers = 0
        for _ in 0..<30 {
            try junk.send(Self.unsignedAllocate(), to: h.server)
            if try junk.receive() != nil { answers += 1 }
        }
        #expect(answers == 30)
        #expect(h.engine.kernelSourceDrops == 0)
        FastPathTests.waitForCounters(h) { $0.engine.counter("stunRequests") ?? 0 >= 30 }
        #expect(h.engine.counter("kernelSourceBlocks") == 0)
    }

    @Test("auto with the limits off at start attaches the filter when a reload turns one on")
    func reloadTurningTheLimitsOnAttaches() throws {
        let h = try Self.harness(.auto, failedRate: 0)
        let junk = try TestSocket()
        try junk.socket.setReceiveTimeout(.milliseconds(200))
        // Attached to nothing yet: every request is answered, none dropped in the kernel.
        for _ in 0..<20 { try junk.send(Self.unsignedAllocate(), to: h.server) }
        var answers = 0
        while try junk.receive() != nil { answers += 1 }
        #expect(answers == 20)
        #expect(h.engine.kernelSourceDrops == 0)
        var on = h.turn
        on.sourceLimits = SourceRateLimits(failedPerSecond: 1)
        h.engine.reload(turn: on)
        for _ in 0..<200 where !h.logs.all.contains(where: { $0.contains("a per-source limit was turned on") }) {
            usleep(10_000)
        }
        #expect(h.logs.all.contains { $0.contains("kernel source filter: on (a per-source limit was turned on)") })
        try Self.sendUntilTheKernelDrops(Self.unsignedAllocate(), from: junk, h)
        #expect((h.engine.kernelSourceDrops ?? 0) > 0)
    }

    @Test("off loads nothing; auto loads the program whatever the limits (it attaches while one is on)")
    func modes() throws {
        let off = try Self.harness(.off)
        #expect(off.engine.kernelSourceDrops == nil)
        let autoNoLimits = try Self.harness(.auto, failedRate: 0)
        #expect(autoNoLimits.engine.kernelSourceDrops == 0)
        #expect(autoNoLimits.logs.all.contains { $0.contains("attached when a reload turns a per-source limit on") })
        let auto = try Self.harness(.auto)
        #expect(auto.engine.kernelSourceDrops == 0)
    }
}
