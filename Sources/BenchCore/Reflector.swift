import CURing
import Foundation
import Synchronization
import URing

#if canImport(Glibc)
    import Glibc
#endif

/// The peer: a UDP echo on its own thread that sends every datagram back to
/// where it came from (the relayed address), on an io_uring of its own.
public final class Reflector: @unchecked Sendable {
    public let address: SocketAddress
    let socket: UDPSocket
    let stopping = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    let echoedCount = Atomic<UInt64>(0)
    private var thread: Thread?

    public init(bind: SocketAddress) throws {
        socket = try UDPSocket.bound(to: bind)
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
    /// ring, each datagram copied into a send slot and sent back to its source
    /// with SENDMSG, everything a loop iteration prepared submitted together.
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
        var buffers = try BufferRing(ring: &ring, groupID: 0, count: 2048, bufferSize: 2048)
        let header = ReceiveMessageHeader()
        let slotCount = 1024
        let slotSize = 2048
        let slots = SendMessageSlots(count: slotCount, iovecsPerMessage: 1)
        let data = UnsafeMutableRawPointer.allocate(byteCount: slotCount * slotSize, alignment: 16)
        defer { data.deallocate() }
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
                    free.append(Int(cqe.userData.slot))
                    if cqe.result >= 0 { count += 1 }
                    continue
                }
                if let id = cqe.bufferID {
                    if let msg = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result),
                        let source = msg.sourceAddress, !msg.isPayloadTruncated, let slot = free.popLast()
                    {
                        let p = UnsafeRawBufferPointer(msg.payload)
                        let dst = data + slot * slotSize
                        if p.count > 0 { dst.copyMemory(from: p.baseAddress!, byteCount: p.count) }
                        slots.iovecs(slot)[0] = iovec(iov_base: dst, iov_len: p.count)
                        let m = slots.prepare(slot, destination: source, iovecCount: 1)
                        if !ring.prepareSendMessage(
                            socket: fd, message: m, userData: UserData(kind: Self.sendKind, slot: UInt32(slot)))
                        {
                            _ = try ring.submit()
                            if !ring.prepareSendMessage(
                                socket: fd, message: m, userData: UserData(kind: Self.sendKind, slot: UInt32(slot)))
                            {
                                free.append(slot)
                            }
                        }
                    }
                    buffers.recycle(id)
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
