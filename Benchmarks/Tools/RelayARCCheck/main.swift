// The relay engine's per-packet path under callgrind, for Benchmarks/arc-check.sh.
//
//   RelayARCCheck free-port               print a free UDP port on 127.0.0.1
//   RelayARCCheck serve PORT              run an engine (1 worker) on 127.0.0.1:PORT until killed
//   RelayARCCheck drive PORT [N] [K]      drive that engine: setup, N ChannelData round
//                                         trips between two Binding markers, K control allocations
//
// arc-check.sh runs `serve` under callgrind and `drive` natively, in another
// process. Two processes because valgrind 3.19 does not treat io_uring_enter
// as a blocking syscall: the worker keeps valgrind's big lock while it waits
// in the ring, so no other thread of a valgrind'd process gets to run (a
// single-process check with the sockets on the main thread hangs in setup).
// With the traffic coming from outside, only the worker thread has work.
//
// Collection windows are cut by the worker itself, without client requests:
// callgrind runs with
//   --collect-atstart=no --toggle-collect=<Worker.dispatch>
//   --dump-before=<Worker.handleSTUN> --dump-after=<Worker.handleSTUN>
// so it collects only while the worker is inside `dispatch` (and what it
// calls), and writes one dump (of the worker thread, then zeroed) on entry to
// and on exit from every control-path STUN handling. Every request `drive`
// sends is answered before the next is sent, so request i (0-based) makes
// dumps 2i+1 (before) and 2i+2 (after), and:
//   - the data-path window is the "before" dump of the second Binding marker:
//     everything `dispatch` did from the end of the first marker's
//     `handleSTUN` to the start of the second's, i.e. the N round trips (plus
//     the marker's response send completion and the second marker's
//     classification, both data-path code). The control path used for setup
//     (Allocate, ChannelBind) is in other dumps.
//   - the positive control is the "after" dump of a control Allocate: the
//     same thread, the same toggle, a path that allocates and retains.
// `drive` prints the dump numbers for the script.
import Glibc
import RelayFixture
import URing

let args = CommandLine.arguments
func arg(_ i: Int, _ fallback: Int) -> Int { args.count > i ? Int(args[i])! : fallback }

switch args.count > 1 ? args[1] : "" {
case "free-port":
    print(try RelayFixture.freePort())

case "serve":
    let port = UInt16(arg(2, 0))
    let (engine, _) = try RelayFixture.startEngine(port: port)
    // Never returns: the script kills this process once `drive` is done
    // (its dumps are on disk by then).
    while true { pause() }
    withExtendedLifetime(engine) {}

case "drive":
    let port = UInt16(arg(2, 0))
    let iterations = arg(3, 1000)
    let controls = arg(4, 4)
    // Wait until the engine's listener is bound (no traffic before, so no
    // request is lost or handled twice): a bind without SO_REUSEPORT fails then.
    var waited = 0
    while let probe = try? UDPSocket.bound(to: .loopbackV4(port: port)) {
        probe.close()
        waited += 1
        precondition(waited < 1200, "drive: no engine on 127.0.0.1:\(port) after 120 s")
        usleep(100_000)
    }
    var requests = 0
    // Generous timeouts: the worker runs under callgrind, and a request is
    // never retransmitted (that would shift the dump numbers).
    let f = RelayFixture(port: port, receiveTimeout: .seconds(60))
    requests += RelayFixture.setupRequests
    var sum = 0
    for _ in 0..<200 { sum &+= f.roundTrip() }
    precondition(sum == 200 * RelayFixture.frameSize, "drive: warm-up round trips failed")

    precondition(f.binding(), "drive: Binding marker failed")
    requests += 1
    sum = 0
    for _ in 0..<iterations { sum &+= f.roundTrip() }
    precondition(sum == iterations * RelayFixture.frameSize, "drive: a measured round trip failed")
    precondition(f.binding(), "drive: Binding marker failed")
    let window = 2 * requests + 1
    requests += 1

    var control: [Int] = []
    for _ in 0..<controls {
        // 401 Allocate, Allocate (its "after" dump), Refresh 0.
        control.append(2 * (requests + 1) + 2)
        precondition(f.controlAllocateAndDelete(), "drive: control allocation failed")
        requests += RelayFixture.controlRequests
    }
    print("window=\(window) iterations=\(iterations) control=\(control.map(String.init).joined(separator: ",")) dumps=\(2 * requests)")

default:
    print("usage: RelayARCCheck free-port | serve PORT | drive PORT [N] [K]")
    exit(2)
}
