// Runs each measured operation of the STUN and TURN benchmark suites N times
// inside a callgrind collection window (one dump per operation), for
// Benchmarks/arc-check.sh, which then counts the calls to the Swift runtime's
// reference counting and to malloc inside each window.
//
// package-benchmark's ARC metrics crash on Swift 6.3 Linux without the
// optional swift-runtime-interposer package; this is the replacement proof.
//
// Usage: ARCCheck [iterations]   (under valgrind --tool=callgrind --collect-atstart=no)
import BenchmarkFixtures
import CCallgrind

let iterations = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1])! : 1000
if uturn_running_on_valgrind() == 0 {
    print("note: not under valgrind; the collection windows are no-ops")
}

/// Warm up (first-call costs: lazy binding, metadata) then measure `body` N times.
@inline(never)
func window(_ name: StaticString, _ body: (Int) -> Int) {
    var sum = 0
    for i in 0..<16 { sum &+= body(i) }
    precondition(sum > 0, "\(name): warm-up failed")
    uturn_callgrind_start()
    for i in 0..<iterations { sum &+= body(i) }
    uturn_callgrind_stop(UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self))
    precondition(sum > 0)
    print("\(name): \(iterations) iterations")
}

let stun = STUNFixture()
window("STUN.parseBinding") { _ in STUNOps.parseBinding(stun) }
window("STUN.parseAndVerifyAllocate") { _ in STUNOps.parseAndVerifyAllocate(stun) }
window("STUN.parseChannelData") { _ in STUNOps.parseChannelData(stun) }
window("STUN.encodeSuccessResponse") { _ in STUNOps.encodeSuccessResponse(stun) }
window("STUN.encodeDataIndication") { _ in STUNOps.encodeDataIndication(stun) }

var data = DataPathFixture()
let n = DataPathFixture.allocationCount
window("TURN.routeChannelData") { DataPathOps.routeChannelData(data, $0 % n) }
window("TURN.routePeerDataChannel") { DataPathOps.routePeerDataChannel(data, $0 % n) }
window("TURN.routePeerDataIndication") { DataPathOps.routePeerDataIndication(data, $0 % n) }
window("TURN.isPermitted") { DataPathOps.isPermitted(data, $0 % n) }
window("TURN.sendIndication") { DataPathOps.sendIndication(&data, $0 % n) }

var control = ControlFixture()
window("TURN.binding") { _ in ControlOps.binding(&control) }
window("TURN.allocatePermitBindRefresh") { _ in ControlOps.allocatePermitBindRefresh(&control) }

var junk = JunkFixture()
window("TURN.rateLimitedDrop") { _ in JunkOps.rateLimitedDrop(&junk) }
window("TURN.unansweredCharge") { _ in JunkOps.unansweredCharge(&junk) }

/// Positive control: an operation that does allocate and retain (the object
/// escapes into a global), so a window that reports zero is known to be able
/// to report non-zero.
final class Box {
    var value: Int
    init(_ v: Int) { value = v }
}
nonisolated(unsafe) var escaped: [Box] = []
window("Control.allocateAndRetain") { i in
    let b = Box(i + 1)
    escaped.append(b)
    if escaped.count > 64 { escaped.removeAll(keepingCapacity: true) }
    return b.value
}
