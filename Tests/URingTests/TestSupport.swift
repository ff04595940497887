import CURing
import Testing
import URing

#if canImport(Glibc)
import Glibc
#endif

/// Why io_uring cannot be used here, or nil. Computed once; printed once so a
/// skipped run says why.
let ioUringUnavailableReason: String? = {
    var o = RingOptions()
    o.submissionEntries = 4
    o.completionEntries = 8
    do {
        _ = try Ring(options: o)
        return nil
    } catch let error as URingError {
        let reason = "io_uring unavailable, skipping URing tests: \(error.explanation)"
        print(reason)
        return reason
    } catch {
        let reason = "io_uring unavailable, skipping URing tests: \(error)"
        print(reason)
        return reason
    }
}()

var ioUringAvailable: Bool { ioUringUnavailableReason == nil }

func smallOptions(_ rung: SetupRung? = nil) -> RingOptions {
    var o = rung.map(RingOptions.forcing) ?? RingOptions()
    o.submissionEntries = 32
    o.completionEntries = 256
    return o
}

/// Sends `count` datagrams "msg-<i>" from `sender` to `destination`.
func sendNumbered(
    _ count: Int, startingAt first: Int = 0, from sender: UDPSocket, to destination: SocketAddress, size: Int? = nil
) throws {
    for i in first..<(first + count) {
        var bytes = Array("msg-\(i)".utf8)
        if let size { bytes += Array(repeating: UInt8(ascii: "."), count: max(0, size - bytes.count)) }
        _ = try bytes.withUnsafeBytes { try sender.send($0, to: destination) }
    }
}

/// Waits (bounded) until `done()` or the deadline, reaping with `body`.
func pump(
    _ ring: inout Ring, until done: () -> Bool, iterations: Int = 50,
    _ body: (inout Ring, Completion) throws -> Void
) throws {
    var cqes = [Completion](repeating: Completion(userData: UserData(rawValue: 0), result: 0, flags: 0), count: 64)
    var i = 0
    while !done() && i < iterations {
        i += 1
        try ring.submitAndWait(minComplete: 1, timeout: .milliseconds(100))
        let n = cqes.withUnsafeMutableBufferPointer { ring.reapCompletions(into: $0) }
        for c in cqes[0..<n] { try body(&ring, c) }
    }
}
