import CURing
import Dispatch
import Testing
import URing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.enabled(if: ioUringAvailable, "io_uring unavailable (reason printed)"))
struct RingTests {
    @Test(arguments: SetupRung.allCases)
    func setupEachRung(rung: SetupRung) throws {
        let ring = try Ring(options: smallOptions(rung))
        #expect(ring.setupRung == rung)
        #expect(ring.submissionEntries == 32)
        #expect(ring.completionEntries == 256)
        let ok17 = ring.hasFeature(IORING_FEAT_NODROP)
        #expect(ok17)
    }

    @Test func ladderPicksNewestByDefault() throws {
        let ring = try Ring(options: smallOptions())
        let features = try KernelFeatures.probe()
        #expect(ring.setupRung == features.bestRung)
    }

    @Test func invalidRungRangeIsRejected() {
        var o = smallOptions()
        o.highestRung = .coopTaskrun
        o.lowestRung = .singleIssuerDeferTaskrun
        #expect(throws: URingError.self) { try Ring(options: o) }
    }

    @Test func probeDescription() throws {
        let f = try KernelFeatures.probe()
        print(f.description)
        #expect(!f.kernelRelease.isEmpty && f.kernelRelease != "unknown")
        #expect(f.description.hasPrefix("kernel \(f.kernelRelease) offers io_uring"))
        #expect(f.description.contains("; chose \(f.chosenRung)"))
        #expect(!f.description.contains("\n"))
        #expect(f.chosenRung <= f.bestRung)
        #expect(f.supportedOpcodes.contains(IORING_OP_NOP))
        #expect(f.supportedOpcodes.contains(IORING_OP_RECVMSG))
        #expect(f.supportedOpcodes.contains(IORING_OP_SENDMSG))
        #expect(f.has(feature: IORING_FEAT_NODROP))
        #expect(f.providedBufferRings)  // 5.19+ is the floor
        if f.bestRung >= .singleIssuerCoopTaskrun { #expect(f.multishotReceiveMessage) }
        #expect(f.useMultishotReceive == f.multishotReceiveMessage)

        var forced = RingOptions.forcing(.coopTaskrun)
        forced.allowMultishotReceive = false
        let g = try KernelFeatures.probe(options: forced)
        #expect(g.chosenRung == .coopTaskrun)
        #expect(!g.useMultishotReceive)
        #expect(g.description.contains("chose COOP_TASKRUN with single-shot RECVMSG"))
    }

    @Test(arguments: SetupRung.allCases)
    func nopRoundTrip(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        let tags = (0..<10).map { UserData(kind: .init(rawValue: 7), slot: UInt32($0) * 1000, generation: UInt32($0) + 0xFF_FFF0) }
        for t in tags {
            let ok = ring.prepareNop(userData: t)
            #expect(ok)
        }
        #expect(ring.pendingSubmissions == 10)
        #expect(try ring.submitAndWait(minComplete: 10) == 10)
        var seen: [UserData] = []
        let n = ring.forEachCompletion { cqe in
            #expect(cqe.result == 0)
            #expect(!cqe.hasBuffer && cqe.bufferID == nil && !cqe.hasMore)
            seen.append(cqe.userData)
        }
        #expect(n == 10)
        #expect(seen == tags)
        #expect(seen.map(\.kind.rawValue) == Array(repeating: 7, count: 10))
        #expect(seen.map(\.slot) == (0..<10).map { UInt32($0) * 1000 })
        #expect(ring.completionsReady == 0)
    }

    @Test func fullSubmissionQueueReturnsFalse() throws {
        var ring = try Ring(options: smallOptions())
        var prepared = 0
        while ring.prepareNop(userData: UserData(kind: .init(rawValue: 1), slot: UInt32(prepared))) { prepared += 1 }
        #expect(prepared == 32)
        #expect(ring.submissionSpaceLeft == 0)
        #expect(try ring.submitAndWait(minComplete: 32) == 32)
        #expect(ring.forEachCompletion { _ in } == 32)
        let ok85 = ring.prepareNop(userData: UserData(kind: .init(rawValue: 1), slot: 0))
        #expect(ok85)
    }

    @Test(arguments: [SetupRung.singleIssuerDeferTaskrun, .coopTaskrun])
    func timeoutFires(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        let owned = UserData(kind: .init(rawValue: 3), slot: 1)
        let callerOwned = UserData(kind: .init(rawValue: 3), slot: 2)
        var ts = KernelTimespec(.milliseconds(30))
        let start = ContinuousClock.now
        let ok96 = ring.prepareTimeout(after: .milliseconds(20), userData: owned)
        #expect(ok96)
        let ok98 = ring.prepareTimeout(&ts, userData: callerOwned)
        #expect(ok98)
        var results: [UserData: Int32] = [:]
        try pump(&ring, until: { results.count == 2 }) { _, cqe in results[cqe.userData] = cqe.result }
        #expect(results[owned] == -ETIME)
        #expect(results[callerOwned] == -ETIME)
        #expect(ContinuousClock.now - start >= .milliseconds(25))
    }

    @Test func timeoutRemoveCancels() throws {
        var ring = try Ring(options: smallOptions())
        let timer = UserData(kind: .init(rawValue: 3), slot: 9)
        let remove = UserData(kind: .init(rawValue: 4), slot: 9)
        let ok111 = ring.prepareTimeout(after: .seconds(30), userData: timer)
        #expect(ok111)
        try ring.submit()
        let ok114 = ring.prepareTimeoutRemove(target: timer, userData: remove)
        #expect(ok114)
        var results: [UserData: Int32] = [:]
        try pump(&ring, until: { results.count == 2 }) { _, cqe in results[cqe.userData] = cqe.result }
        #expect(results[timer] == -ECANCELED)
        #expect(results[remove] == 0)
    }

    @Test func waitTimeoutReturnsWithoutCompletions() throws {
        var ring = try Ring(options: smallOptions())
        let start = ContinuousClock.now
        #expect(try ring.submitAndWait(minComplete: 1, timeout: .milliseconds(20)) == 0)
        #expect(ContinuousClock.now - start >= .milliseconds(15))
        #expect(ring.completionsReady == 0)
    }

    @Test(arguments: [SetupRung.singleIssuerDeferTaskrun, .singleIssuerCoopTaskrun, .coopTaskrun])
    func wakerWakesBlockedRing(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        let waker = try ring.makeWaker()
        #expect(try ring.makeWaker() === waker)
        for round in 0..<3 {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(30)) { waker.wake() }
            let start = ContinuousClock.now
            var woke = false
            // A long timeout: only the waker can end this wait in time.
            try ring.submitAndWait(minComplete: 1, timeout: .seconds(10))
            ring.forEachCompletion { cqe in
                if cqe.userData.kind == .wake {
                    woke = true
                    #expect(cqe.result == 8)
                }
            }
            #expect(woke, "round \(round)")
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func messageRingWakesAnotherRing() throws {
        var a = try Ring(options: smallOptions(.coopTaskrun))
        var b = try Ring(options: smallOptions(.coopTaskrun))
        let target = UserData(kind: .init(rawValue: 9), slot: 42, generation: 5)
        let prepared = a.prepareMessageRing(
            targetRing: b.fileDescriptor, result: 1234, targetUserData: target,
            userData: UserData(kind: .init(rawValue: 8), slot: 0))
        #expect(prepared)
        try a.submitAndWait(minComplete: 1, timeout: .seconds(1))
        var sent: Int32?
        a.forEachCompletion { sent = $0.result }
        #expect(sent == 0)
        try b.submitAndWait(minComplete: 1, timeout: .seconds(1))
        var got: Completion?
        b.forEachCompletion { got = $0 }
        #expect(got?.userData == target)
        #expect(got?.result == 1234)
    }

    @Test func errorsExplainThemselves() {
        #expect(URingError.explainUnavailable(Errno(rawValue: EPERM)).contains("seccomp"))
        #expect(URingError.explainUnavailable(Errno(rawValue: EPERM)).contains("kernel.io_uring_disabled"))
        #expect(URingError.explainUnavailable(Errno(rawValue: ENOSYS)).contains("5.19"))
        #expect(URingError.explainUnavailable(Errno(rawValue: ENOMEM)).contains("LimitMEMLOCK"))
        let e = URingError.register(call: "io_uring_register_buf_ring", Errno(rawValue: EEXIST))
        #expect(e.call == "io_uring_register_buf_ring")
        #expect(e.errno.rawValue == EEXIST)
        #expect(e.description.hasPrefix("io_uring_register_buf_ring: "))
    }
}
