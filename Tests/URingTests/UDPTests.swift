import CURing
import Testing
import URing

#if canImport(Glibc)
import Glibc
#endif

/// Loopback UDP through the ring: receive paths, buffer recycling and
/// exhaustion, GSO sends. Ports come from binding to port 0.
@Suite(.enabled(if: ioUringAvailable, "io_uring unavailable (reason printed)"))
struct UDPTests {
    let listenKind = UserData.Kind(rawValue: 1)

    @Test(arguments: [SetupRung.singleIssuerDeferTaskrun, .singleIssuerCoopTaskrun, .coopTaskrun])
    func multishotReceive(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        var buffers = try BufferRing(ring: &ring, groupID: 1, count: 16, bufferSize: 2048)
        let header = ReceiveMessageHeader()
        let receiver = try UDPSocket.bound(to: .loopbackV4())
        defer { receiver.close() }
        let sender = try UDPSocket.bound(to: .loopbackV4())
        defer { sender.close() }
        let destination = try receiver.localAddress()
        let source = try sender.localAddress()
        #expect(destination.port != 0 && destination.port != 3478)

        let tag = UserData(kind: listenKind, slot: 5, generation: 2)
        let armed = ring.prepareReceiveMessageMultishot(
            socket: receiver.rawValue, header: header, bufferGroup: 1, userData: tag)
        #expect(armed)
        try ring.submit()

        var received: [String] = []
        // 48 datagrams through 16 buffers: only works if recycling works.
        for batch in 0..<6 {
            try sendNumbered(8, startingAt: batch * 8, from: sender, to: destination)
            let want = (batch + 1) * 8
            try pump(&ring, until: { received.count == want }) { ring, cqe in
                #expect(cqe.userData == tag)
                #expect(cqe.hasMore, "multishot ended: \(cqe)")
                let id = try #require(cqe.bufferID)
                let parsed = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result)
                let msg = try #require(parsed)
                #expect(msg.sourceAddress == source)
                #expect(!msg.isPayloadTruncated && !msg.isControlTruncated)
                #expect(msg.groSegmentSize == nil)
                received.append(String(decoding: msg.payload, as: UTF8.self))
                buffers.recycle(id)
                buffers.publishRecycled()
            }
        }
        #expect(received == (0..<48).map { "msg-\($0)" })
        _ = consume buffers
    }

    @Test(arguments: [SetupRung.coopTaskrun, .singleIssuerDeferTaskrun])
    func singleShotReceive(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        var buffers = try BufferRing(ring: &ring, groupID: 3, count: 4, bufferSize: 1024)
        let header = ReceiveMessageHeader()
        let receiver = try UDPSocket.bound(to: .loopbackV4())
        defer { receiver.close() }
        let sender = try UDPSocket.bound(to: .loopbackV4())
        defer { sender.close() }
        let source = try sender.localAddress()
        let tag = UserData(kind: listenKind, slot: 1)
        var armed = ring.prepareReceiveMessage(socket: receiver.rawValue, header: header, bufferGroup: 3, userData: tag)
        #expect(armed)
        try sendNumbered(12, from: sender, to: try receiver.localAddress())

        var received: [String] = []
        try pump(&ring, until: { received.count == 12 }) { ring, cqe in
            #expect(cqe.userData == tag)
            #expect(!cqe.hasMore)
            let id = try #require(cqe.bufferID, "\(cqe)")
            let msg = header.parseSingleShot(buffer: buffers.buffer(id), length: cqe.result)
            #expect(msg.sourceAddress == source)
            received.append(String(decoding: msg.payload, as: UTF8.self))
            buffers.recycle(id)
            buffers.publishRecycled()
            armed = ring.prepareReceiveMessage(socket: receiver.rawValue, header: header, bufferGroup: 3, userData: tag)
            #expect(armed)
        }
        #expect(received == (0..<12).map { "msg-\($0)" })
        _ = consume buffers
    }

    @Test(arguments: [SetupRung.singleIssuerDeferTaskrun, .coopTaskrun])
    func bufferExhaustionEndsMultishotAndRearmResumes(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        var buffers = try BufferRing(ring: &ring, groupID: 7, count: 2, bufferSize: 512)
        let header = ReceiveMessageHeader()
        let receiver = try UDPSocket.bound(to: .loopbackV4())
        defer { receiver.close() }
        let sender = try UDPSocket.bound(to: .loopbackV4())
        defer { sender.close() }
        let tag = UserData(kind: listenKind, slot: 3)
        var armed = ring.prepareReceiveMessageMultishot(
            socket: receiver.rawValue, header: header, bufferGroup: 7, userData: tag)
        #expect(armed)
        try ring.submit()
        try sendNumbered(10, from: sender, to: try receiver.localAddress())

        var received: [String] = []
        var held: [UInt16] = []
        var endings = 0
        var noBuffers = 0
        try pump(&ring, until: { received.count == 10 }, iterations: 200) { ring, cqe in
            #expect(cqe.userData == tag)
            if let id = cqe.bufferID {
                let parsed = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result)
                let msg = try #require(parsed)
                received.append(String(decoding: msg.payload, as: UTF8.self))
                held.append(id)  // keep the buffer: the ring runs dry
            }
            if !cqe.hasMore {
                endings += 1
                if cqe.result == -ENOBUFS { noBuffers += 1 }
                // The engine's rule: give buffers back, then re-arm.
                for id in held { buffers.recycle(id) }
                held.removeAll()
                buffers.publishRecycled()
                armed = ring.prepareReceiveMessageMultishot(
                    socket: receiver.rawValue, header: header, bufferGroup: 7, userData: tag)
                #expect(armed)
            }
        }
        #expect(received == (0..<10).map { "msg-\($0)" })
        #expect(noBuffers >= 1)
        #expect(endings == noBuffers)
        _ = consume buffers
    }

    @Test func cancelByFileDescriptorEndsMultishot() throws {
        var ring = try Ring(options: smallOptions())
        let buffers = try BufferRing(ring: &ring, groupID: 2, count: 4, bufferSize: 512)
        let header = ReceiveMessageHeader()
        let receiver = try UDPSocket.bound(to: .loopbackV4())
        defer { receiver.close() }
        let tag = UserData(kind: listenKind, slot: 11, generation: 9)
        let cancel = UserData(kind: .init(rawValue: 2), slot: 11)
        let armed = ring.prepareReceiveMessageMultishot(
            socket: receiver.rawValue, header: header, bufferGroup: 2, userData: tag)
        #expect(armed)
        try ring.submit()
        let cancelled = ring.prepareCancel(fileDescriptor: receiver.rawValue, userData: cancel)
        #expect(cancelled)
        var results: [UserData: Completion] = [:]
        try pump(&ring, until: { results.count == 2 }) { _, cqe in results[cqe.userData] = cqe }
        #expect(results[tag]?.result == -ECANCELED)
        #expect(results[tag]?.hasMore == false)
        #expect(results[cancel]?.result == 1)  // one request cancelled
        _ = consume buffers
    }

    /// One SENDMSG with a UDP_SEGMENT cmsg and one iovec per segment, as the
    /// engine's batcher builds it.
    @Test(arguments: [SetupRung.singleIssuerDeferTaskrun, .coopTaskrun])
    func gsoSendArrivesAsSeparateDatagrams(rung: SetupRung) throws {
        var ring = try Ring(options: smallOptions(rung))
        let sender = try UDPSocket.bound(to: .loopbackV4())
        defer { sender.close() }
        let receiver = try UDPSocket.bound(to: .loopbackV4())
        defer { receiver.close() }
        try receiver.setReceiveTimeout(.seconds(2))
        let source = try sender.localAddress()

        let segments = 5
        let segmentSize = 100
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: segments * segmentSize, alignment: 8)
        defer { payload.deallocate() }
        for i in 0..<payload.count { payload[i] = UInt8(i / segmentSize) &+ 0x41 }
        let sends = SendMessageSlots(count: 4, iovecsPerMessage: 8)
        let slot = 2
        let iov = sends.iovecs(slot)
        for i in 0..<segments {
            iov[i] = iovec(iov_base: payload.baseAddress! + i * segmentSize, iov_len: segmentSize)
        }
        let message = sends.prepare(
            slot, destination: try receiver.localAddress(), iovecCount: segments, segmentSize: UInt16(segmentSize))
        #expect(message.pointee.msg_controllen == ControlMessages.udpSegmentSpace)

        let tag = UserData(kind: .init(rawValue: 4), slot: UInt32(slot))
        let prepared = ring.prepareSendMessage(socket: sender.rawValue, message: message, userData: tag)
        #expect(prepared)
        var sent: Int32?
        try pump(&ring, until: { sent != nil }) { _, cqe in
            #expect(cqe.userData == tag)
            sent = cqe.result
        }
        #expect(sent == Int32(segments * segmentSize))

        var datagram = [UInt8](repeating: 0, count: 2048)
        for i in 0..<segments {
            let got = try datagram.withUnsafeMutableBytes { try receiver.receive(into: $0) }
            let (count, from) = try #require(got, "datagram \(i) missing")
            #expect(count == segmentSize)
            #expect(from == source)
            #expect(datagram[0..<count].allSatisfy { $0 == UInt8(i) + 0x41 })
        }
    }

    /// GSO train in, GRO train out: a UDP_GRO socket receives the 5 segments as
    /// one buffer with the segment size in a cmsg.
    @Test func groReceiveReportsSegmentSize() throws {
        var ring = try Ring(options: smallOptions())
        var buffers = try BufferRing(ring: &ring, groupID: 4, count: 4, bufferSize: 65536)
        let header = ReceiveMessageHeader()
        let receiver = try UDPSocket.bound(to: .loopbackV4())
        defer { receiver.close() }
        try receiver.setUDPGRO(true)
        let sender = try UDPSocket.bound(to: .loopbackV4())
        defer { sender.close() }

        // A plain sendmsg with UDP_SEGMENT, so this test does not depend on the
        // ring's send path.
        var payload = [UInt8](repeating: 0x5A, count: 500)
        var control = [UInt64](repeating: 0, count: 4)
        var name = try receiver.localAddress().storage
        let sent = payload.withUnsafeMutableBytes { p in
            control.withUnsafeMutableBytes { c in
                withUnsafeMutablePointer(to: &name) { n in
                    var iov = iovec(iov_base: p.baseAddress, iov_len: p.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var m = msghdr()
                        m.msg_name = UnsafeMutableRawPointer(n)
                        m.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
                        m.msg_iov = iovp
                        m.msg_iovlen = 1
                        m.msg_control = c.baseAddress
                        m.msg_controllen = ControlMessages.writeUDPSegment(100, to: c.baseAddress!)
                        return sendmsg(sender.rawValue, &m, 0)
                    }
                }
            }
        }
        #expect(sent == 500)

        let tag = UserData(kind: listenKind, slot: 0)
        let armed = ring.prepareReceiveMessageMultishot(
            socket: receiver.rawValue, header: header, bufferGroup: 4, userData: tag)
        #expect(armed)
        var total = 0
        var segmentSizes: [Int?] = []
        try pump(&ring, until: { total == 500 }) { _, cqe in
            let id = try #require(cqe.bufferID, "\(cqe)")
            let parsed = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result)
                let msg = try #require(parsed)
            total += msg.payload.count
            segmentSizes.append(msg.groSegmentSize)
            buffers.recycle(id)
            buffers.publishRecycled()
        }
        #expect(total == 500)
        // Usually one 500-byte train with a 100-byte segment size cmsg.
        #expect(segmentSizes.contains(100))
        _ = consume buffers
    }

    /// IPv6 end to end through one ring: a plain SENDMSG from a slot, received
    /// by a multishot RECVMSG on the same ring, with the source decoded from a
    /// sockaddr_in6.
    @Test func ipv6SendAndReceiveThroughRing() throws {
        guard let receiver = try? UDPSocket.bound(to: .loopbackV6()) else {
            print("no IPv6 loopback here; skipping ipv6SendAndReceiveThroughRing")
            return
        }
        defer { receiver.close() }
        let sender = try UDPSocket.bound(to: .loopbackV6())
        defer { sender.close() }
        var ring = try Ring(options: smallOptions())
        var buffers = try BufferRing(ring: &ring, groupID: 5, count: 8, bufferSize: 1024)
        let header = ReceiveMessageHeader()
        let sends = SendMessageSlots(count: 2, iovecsPerMessage: 1)
        let payload = Array("hello over ::1".utf8)
        let receiveTag = UserData(kind: listenKind, slot: 0)
        let sendTag = UserData(kind: .init(rawValue: 4), slot: 1)
        try payload.withUnsafeBytes { bytes in
            sends.iovecs(1)[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
            let message = sends.prepare(1, destination: try receiver.localAddress(), iovecCount: 1)
            let armed = ring.prepareReceiveMessageMultishot(
                socket: receiver.rawValue, header: header, bufferGroup: 5, userData: receiveTag)
            let sent = ring.prepareSendMessage(socket: sender.rawValue, message: message, userData: sendTag)
            #expect(armed && sent)
            var sendResult: Int32?
            var got: (SocketAddress?, [UInt8])?
            try pump(&ring, until: { sendResult != nil && got != nil }) { _, cqe in
                if cqe.userData == sendTag {
                    sendResult = cqe.result
                } else {
                    let id = try #require(cqe.bufferID, "\(cqe)")
                    let parsed = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result)
                    let msg = try #require(parsed)
                    got = (msg.sourceAddress, Array(msg.payload))
                    buffers.recycle(id)
                    buffers.publishRecycled()
                }
            }
            #expect(sendResult == Int32(payload.count))
            #expect(got?.0 == (try sender.localAddress()))
            #expect(got?.0?.family == .v6)
            #expect(got?.1 == payload)
        }
        _ = consume buffers
    }
}
