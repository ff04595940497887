import CURing
import Foundation
import Synchronization
import URing

#if canImport(Glibc)
import Glibc
#endif

/// The peer: a UDP echo on its own thread that sends every datagram back to
/// where it came from (the relayed address), on an io_uring of its own. With
/// `trains` it receives with UDP_GRO and sends each coalesced train back as
/// one GSO send of the same segment size (the harness's GSO shape).
public final class Reflector: @unchecked Sendable {
    public let address: SocketAddress
    let socket: UDPSocket
    let stopping = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    let echoedCount = Atomic<UInt64>(0)
    private var thread: Thread?
    let trains: Bool

    public init(bind: SocketAddress, trains: Bool = false) throws {
        self.trains = trains
        socket = try UDPSocket.bound(to: bind)
        if trains { try socket.setUDPGRO(true) }
        try? socket.setReceiveBufferSize(8 << 20)
        try? socket.setSendBufferSize(8 << 20)
        address = try socket.localAddress()
    }

    public var echoed: UInt64 { echoedCount.load(ordering: .relaxed) }

    public func start(cpu: Int? = nil) {
        let t = Thread { [self] in
            _ = curing_name_current_thread("bench-peer")
            if let cpu { _ = curing_pin_current_thread(Int32(cpu)) }
            loop()
            finished.store(true, ordering: .releasing)
        }
        thread = t
        t.start()
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        let deadline = Date().addingTimeInterval(2)
        while thread != nil, !finished.load(ordering: .acquiring), Date() < deadline { usleep(1000) }
        socket.close()
    }

    static let receiveKind = UserData.Kind(rawValue: 1)
    static let sendKind = UserData.Kind(rawValue: 2)

    /// The echo on its own io_uring: multishot RECVMSG into a provided-buffer
    /// ring, each datagram (or GRO train) sent back to its source with SENDMSG
    /// straight from its receive buffer, which is recycled when the send
    /// completes; everything a loop iteration prepared is submitted together.
    /// One ring entry per batch instead of two syscalls per datagram, so the
    /// harness's own CPU caps what a relay can show less. With no free send
    /// slot a datagram is dropped, as a full socket buffer would drop it.
    private func loop() {
        do {
            try ringLoop()
        } catch {
            FileHandle.standardError.write(Data("uturn-bench: peer reflector stopped: \(error)\n".utf8))
        }
    }

    private func ringLoop() throws {
        var options = RingOptions()
        options.submissionEntries = 1024
        options.completionEntries = 8192
        var ring = try Ring(options: options)
        // A GRO receive holds up to 64 KiB (plus the multishot header in front).
        var buffers = try BufferRing(
            ring: &ring, groupID: 0, count: trains ? 256 : 2048, bufferSize: trains ? 69632 : 2048)
        let header = ReceiveMessageHeader()
        let slotCount = trains ? 128 : 1024  // half the buffers at most: receives keep going while sends hold some
        let slots = SendMessageSlots(count: slotCount, iovecsPerMessage: 1)
        var slotBuffer = [UInt16](repeating: 0, count: slotCount)
        var free = [Int]()
        free.reserveCapacity(slotCount)
        for i in (0..<slotCount).reversed() { free.append(i) }
        let cqes = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 2048)
        defer { cqes.deallocate() }
        let fd = socket.rawValue
        let receive = UserData(kind: Self.receiveKind, slot: 0)
        var armed = ring.prepareReceiveMessageMultishot(socket: fd, header: header, bufferGroup: 0, userData: receive)
        var count: UInt64 = 0
        while !stopping.load(ordering: .relaxed) {
            _ = try ring.submitAndWait(minComplete: 1, timeout: .milliseconds(50))
            let n = ring.reapCompletions(into: cqes)
            for c in 0..<n {
                let cqe = cqes[c]
                if cqe.userData.kind == Self.sendKind {
                    let slot = Int(cqe.userData.slot)
                    free.append(slot)
                    buffers.recycle(slotBuffer[slot])
                    if cqe.result >= 0 { count += 1 }
                    continue
                }
                if let id = cqe.bufferID {
                    var sending = false
                    if let msg = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result),
                        let source = msg.sourceAddress, !msg.isPayloadTruncated, let slot = free.popLast()
                    {
                        let p = msg.payload
                        let segment = trains ? msg.groSegmentSize : nil
                        slots.iovecs(slot)[0] = iovec(iov_base: p.baseAddress, iov_len: p.count)
                        let m = slots.prepare(
                            slot, destination: source, iovecCount: 1,
                            segmentSize: segment.flatMap { p.count > $0 ? UInt16($0) : nil })
                        let userData = UserData(kind: Self.sendKind, slot: UInt32(slot))
                        if ring.prepareSendMessage(socket: fd, message: m, userData: userData) {
                            sending = true
                        } else {
                            _ = try ring.submit()
                            sending = ring.prepareSendMessage(socket: fd, message: m, userData: userData)
                        }
                        if sending { slotBuffer[slot] = id } else { free.append(slot) }
                    }
                    if !sending { buffers.recycle(id) }
                }
                if !cqe.hasMore { armed = false }
            }
            buffers.publishRecycled()
            if !armed {
                armed = ring.prepareReceiveMessageMultishot(
                    socket: fd, header: header, bufferGroup: 0, userData: receive)
            }
            echoedCount.store(count, ordering: .relaxed)
        }
        _ = ring.prepareCancel(fileDescriptor: fd, userData: UserData(kind: .init(rawValue: 3), slot: 0))
        _ = try? ring.submitAndWait(minComplete: 1, timeout: .milliseconds(50))
        _ = ring.reapCompletions(into: cqes)
        buffers.unregister(from: &ring)
    }
}
