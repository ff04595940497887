import Glibc
import Relay
import STUN
import URing

/// The two pieces under every relayed datagram that the relay round trip
/// does not isolate, as operations for the URing benchmark suite. They live
/// here, not in the suite, because the suite imports package-benchmark, whose
/// swift-system module declares the kernel's io_uring structs too, and the two
/// declarations cannot meet in one module. Built once; never freed.
public struct EngineParts: ~Copyable {
    /// The state, behind an untyped pointer: a URing type in this public
    /// struct's layout would make the suite's module import CURing next to
    /// swift-system's CSystem (see above).
    private let storage: UnsafeMutableRawPointer

    struct State: ~Copyable {
        var ring: Ring
        let completions: UnsafeMutableBufferPointer<Completion>
        var batcher: SendBatcher
        let payload: UnsafeMutableRawPointer
        let destination = TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: 40000)
    }

    public init() {
        var options = RingOptions()
        options.submissionEntries = 256
        options.completionEntries = 1024
        let payload = UnsafeMutableRawPointer.allocate(byteCount: 64 * 128, alignment: 16)
        payload.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 64 * 128)
        let state = UnsafeMutablePointer<State>.allocate(capacity: 1)
        state.initialize(
            to: State(
                ring: try! Ring(options: options), completions: .allocate(capacity: 256),
                batcher: SendBatcher(capacity: 64, gso: true), payload: payload))
        storage = UnsafeMutableRawPointer(state)
    }

    private var state: UnsafeMutablePointer<State> { storage.assumingMemoryBound(to: State.self) }

    /// One io_uring round trip of a batch: 64 NOP SQEs prepared, submitted
    /// and waited for with one io_uring_enter, 64 CQEs reaped. Returns 64.
    @inline(never)
    public func nopBatch() -> Int {
        let s = state
        for i in 0..<64 { s.pointee.ring.prepareNop(userData: UserData(kind: .init(rawValue: 1), slot: UInt32(i))) }
        _ = try? s.pointee.ring.submitAndWait(minComplete: 64)
        var got = 0
        while got < 64 { got += s.pointee.ring.reapCompletions(into: s.pointee.completions) }
        return got
    }

    /// The send batcher alone: 64 datagrams of 120 bytes to one destination
    /// grouped into one UDP_SEGMENT operation, its msghdr and cmsg built
    /// (`flush`), then completed, its buffers handed back. No syscall.
    /// Returns the datagrams completed (64).
    @inline(never)
    public func sendBatcherGroup() -> Int {
        let s = state
        for i in 0..<64 {
            _ = s.pointee.batcher.enqueue(
                fd: 3, to: s.pointee.destination, bytes: s.pointee.payload + i * 128, count: 120, buffer: UInt16(i))
        }
        var first: UInt32 = 0
        var second: UInt32 = 0
        var handed = 0
        _ = s.pointee.batcher.flush { op, _, _ in
            if handed == 0 { first = op } else { second = op }
            handed += 1
            return true
        }
        var datagrams = s.pointee.batcher.complete(first) { _ in }.datagrams
        if handed > 1 { datagrams += s.pointee.batcher.complete(second) { _ in }.datagrams }
        return datagrams
    }
}
