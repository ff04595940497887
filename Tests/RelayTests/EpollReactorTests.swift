import Glibc
import STUN
import Testing
import URing

@testable import Relay

/// The epoll backend on its own: each `Submission` and the completion it
/// must produce (the same one io_uring would), on real loopback sockets,
/// with the kernel's own refusals (partial sendmmsg, EAGAIN, GSO refused,
/// buffers run out, ICMP port unreachable).
@Suite("Epoll reactor", .serialized)
struct EpollReactorTests {
    static let receive = UserData(kind: .relayReceive, slot: 1, generation: 1)

    static func makeReactor(smallBuffers: Int = 64) throws -> Reactor {
        let buffers = try ReceiveBuffers(
            unregisteredSmallCount: smallBuffers, smallSize: 2048, largeCount: 2, largeSize: 4096)
        return try Reactor(epollWith: buffers, maxBatch: 64, backlogCapacity: 64)
    }

    /// Waits and reaps until `enough` says so or ~2 s pass; returns every completion.
    static func pump(
        _ r: inout Reactor, _ out: inout [Completion], until enough: ([Completion]) -> Bool
    ) throws {
        for _ in 0..<40 {
            if enough(out) { return }
            try r.wait(minComplete: 1, timeout: .milliseconds(50))
            let n = r.reap()
            for i in 0..<n { out.append(r.completions[i]) }
        }
    }

    /// Hands a receive completion's buffer back (as the dispatch does).
    static func recycle(_ r: inout Reactor, _ c: Completion) {
        guard let id = c.bufferID else { return }
        r.buffers.took(id)
        r.buffers.release(id)
        r.buffers.publish()
    }

    // MARK: Receiving

    @Test("datagrams arrive as multishot RECVMSG completions in the same buffer layout")
    func receiveDatagrams() throws {
        var r = try Self.makeReactor()
        let a = try LoopbackUDP()
        let b = try LoopbackUDP()
        defer { a.close(); b.close() }
        r.submit(.receiveMessage(socket: a.fd, group: 0, singleShotHeader: -1, userData: Self.receive))
        r.flush()
        for i in 0..<3 { b.send([UInt8(i), 0xAB, 0xCD], to: a.port) }
        var got: [Completion] = []
        try Self.pump(&r, &got) { $0.count >= 3 }
        #expect(got.count == 3)
        for (i, c) in got.enumerated() {
            #expect(c.userData == Self.receive)
            #expect(c.hasMore && c.hasBuffer)
            let parsed = r.received(buffer: c.bufferID!, length: c.result, singleShotHeader: 0)
            let received = try #require(parsed)
            #expect(Array(UnsafeRawBufferPointer(received.payload)) == [UInt8(i), 0xAB, 0xCD])
            #expect(received.source.port == b.port)
            Self.recycle(&r, c)
        }
    }

    @Test("buffers run out: the receive ends with -ENOBUFS, and once re-armed the rest arrives")
    func enobufs() throws {
        var r = try Self.makeReactor(smallBuffers: 2)
        let a = try LoopbackUDP()
        let b = try LoopbackUDP()
        defer { a.close(); b.close() }
        for i in 0..<4 { b.send([UInt8(i)], to: a.port) }
        r.submit(.receiveMessage(socket: a.fd, group: 0, singleShotHeader: -1, userData: Self.receive))
        var got: [Completion] = []
        try Self.pump(&r, &got) { $0.contains { $0.result == -ENOBUFS } }
        #expect(got.filter(\.hasBuffer).count == 2)
        let end = try #require(got.last)
        #expect(end.result == -ENOBUFS && !end.hasMore && !end.hasBuffer)
        guard case .epoll(let e) = r.backend else { Issue.record("not epoll"); return }
        #expect(e.pointee.stats.receivesOutOfBuffers == 1)
        for c in got { Self.recycle(&r, c) }
        got = []
        r.submit(.receiveMessage(socket: a.fd, group: 0, singleShotHeader: -1, userData: Self.receive))
        try Self.pump(&r, &got) { $0.filter(\.hasBuffer).count >= 2 }
        var payloads: [[UInt8]] = []
        for c in got where c.hasBuffer {
            let parsed = r.received(buffer: c.bufferID!, length: c.result, singleShotHeader: 0)
            payloads.append(parsed.map { Array(UnsafeRawBufferPointer($0.payload)) } ?? [])
        }
        #expect(payloads == [[2], [3]])
    }

    @Test("a peer that disappears: the connected socket's receive ends with -ECONNREFUSED")
    func peerGone() throws {
        var r = try Self.makeReactor()
        let a = try LoopbackUDP()
        let gone = try LoopbackUDP()
        let port = gone.port
        gone.close()
        defer { a.close() }
        try a.connect(to: port)
        r.submit(.receiveMessage(socket: a.fd, group: 0, singleShotHeader: -1, userData: Self.receive))
        r.flush()
        a.send([1, 2, 3], to: port)  // the ICMP port unreachable comes back as an error on `a`
        var got: [Completion] = []
        try Self.pump(&r, &got) { !$0.isEmpty }
        let c = try #require(got.first)
        #expect(c.result == -ECONNREFUSED && !c.hasMore)
    }

    @Test("cancel ends an armed receive with -ECANCELED; a connect to a closed port fails")
    func cancelAndConnect() throws {
        var r = try Self.makeReactor()
        let a = try LoopbackUDP()
        defer { a.close() }
        r.submit(.receiveMessage(socket: a.fd, group: 0, singleShotHeader: -1, userData: Self.receive))
        r.submit(.cancel(target: Self.receive))
        var got: [Completion] = []
        try Self.pump(&r, &got) { !$0.isEmpty }
        #expect(got.first?.result == -ECANCELED && got.first?.hasMore == false)

        let closed = try LoopbackUDP()  // a port that was free: nothing listens on TCP there
        let port = closed.port
        closed.close()
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(s) }
        var address = LoopbackUDP.address(port)
        let ud = UserData(kind: .streamConnect, slot: 3, generation: 1)
        got = []
        withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                r.submit(.connect(socket: s, address: sa, length: socklen_t(MemoryLayout<sockaddr_in>.size), userData: ud))
                r.flush()
            }
        }
        try Self.pump(&r, &got) { !$0.isEmpty }
        #expect(got.first?.userData == ud && got.first?.result == -ECONNREFUSED)
    }

    @Test("the waker's eventfd completes as .wake")
    func waker() throws {
        var r = try Self.makeReactor()
        let w = try r.makeWaker()
        w.wake()
        var got: [Completion] = []
        try Self.pump(&r, &got) { !$0.isEmpty }
        #expect(got.first?.userData.kind == .wake)
    }

    // MARK: Sending

    @Test("partial sendmmsg: a refused datagram fails alone, the ones around it are sent")
    func partialSendmmsg() throws {
        var r = try Self.makeReactor()
        let a = try LoopbackUDP()
        let b = try LoopbackUDP()
        defer { a.close(); b.close() }
        // Message 1 names an IPv6 destination on an IPv4 socket: the kernel
        // sends message 0, stops (sendmmsg returns 1), then refuses 1 alone.
        let messages = SendMessages(count: 3)
        defer { messages.free() }
        messages.set(0, bytes: [0], to: b.port)
        messages.setIPv6(1, bytes: [1])
        messages.set(2, bytes: [2], to: b.port)
        for i in 0..<3 {
            r.submit(.sendMessage(socket: a.fd, message: messages.header(i), userData: UserData(kind: .send, slot: UInt32(i))))
        }
        var got: [Completion] = []
        try Self.pump(&r, &got) { $0.count >= 3 }
        #expect(got.map(\.userData.slot) == [0, 1, 2])
        #expect(got[0].result == 1 && got[2].result == 1)
        #expect(got[1].result < 0)
        guard case .epoll(let e) = r.backend else { return }
        #expect(e.pointee.stats.partialBatches >= 1)
        #expect(b.receive() == [0])
        #expect(b.receive() == [2])
    }

    @Test("GSO refused by the kernel (more than UDP_MAX_SEGMENTS): the send fails with -EINVAL, the next plain one goes")
    func gsoRefused() throws {
        var r = try Self.makeReactor()
        let a = try LoopbackUDP()
        let b = try LoopbackUDP()
        defer { a.close(); b.close() }
        let messages = SendMessages(count: 2)
        defer { messages.free() }
        messages.set(0, bytes: [UInt8](repeating: 7, count: 300), to: b.port, segment: 1)
        messages.set(1, bytes: [9], to: b.port)
        r.submit(.sendMessage(socket: a.fd, message: messages.header(0), userData: UserData(kind: .send, slot: 0)))
        r.submit(.sendMessage(socket: a.fd, message: messages.header(1), userData: UserData(kind: .send, slot: 1)))
        var got: [Completion] = []
        try Self.pump(&r, &got) { $0.count >= 2 }
        #expect(got.first?.result == -EINVAL)
        #expect(got.last?.result == 1)
        #expect(b.receive() == [9])
    }

    @Test("EAGAIN on a stream send: the bytes wait for EPOLLOUT, in order, and none are lost")
    func eagainKeepsOrder() throws {
        var r = try Self.makeReactor()
        let pair = try TCPPair()
        defer { pair.close() }
        var small: Int32 = 4096
        setsockopt(pair.server, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(4))
        setsockopt(pair.client, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(4))
        let total = 256 << 10
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 8)
        defer { bytes.deallocate() }
        for i in 0..<total { bytes[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 8) }
        // One SEND in flight at a time, the rest sent again after a short
        // write, as the stream part does: once the small buffers are full,
        // the next SEND finds the socket refusing (EAGAIN) and must wait
        // for EPOLLOUT, which comes as the client reads.
        var sent = 0
        var received: [UInt8] = []
        received.reserveCapacity(total)
        var tag: UInt32 = 0
        var inFlight = false
        var rounds = 0
        while sent < total && rounds < 100_000 {
            rounds += 1
            if !inFlight {
                tag &+= 1
                r.submit(
                    .streamSend(
                        socket: pair.server, bytes: bytes.baseAddress! + sent, count: total - sent,
                        userData: UserData(kind: .streamSend, slot: tag)))
                inFlight = true
            }
            try r.wait(minComplete: 1, timeout: .milliseconds(1))
            let m = r.reap()
            for i in 0..<m {
                let c = r.completions[i]
                #expect(c.result > 0 && c.userData.slot == tag)
                sent += max(0, Int(c.result))
                inFlight = false
            }
            // The client reads only while the send waits (so the socket
            // is full whenever a new SEND is submitted).
            if m == 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = chunk.withUnsafeMutableBytes { recv(pair.client, $0.baseAddress, 65536, Int32(MSG_DONTWAIT)) }
                if n > 0 { received += chunk[0..<n] }
            }
        }
        guard case .epoll(let e) = r.backend else { return }
        let deferred = e.pointee.stats.sendsDeferred
        while received.count < total {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(pair.client, $0.baseAddress, 65536, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        #expect(deferred > 0, "the socket never refused a send")
        #expect(received.count == total)
        #expect(received == Array(bytes))
    }
}

// MARK: Test sockets

/// A blocking UDP socket on 127.0.0.2 with a 2 s receive timeout.
final class LoopbackUDP {
    let fd: Int32
    let port: UInt16

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var a = Self.address(0)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, 16) } }
        var length = socklen_t(16)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
        }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        fd = s
        port = UInt16(bigEndian: a.sin_port)
    }

    static func address(_ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        // 127.0.0.2: the engine tests running beside these bind 127.0.0.1
        // (relay ports overlap the ephemeral range), so these never take
        // or poke a port one of them uses.
        a.sin_addr.s_addr = UInt32(0x7F00_0002).bigEndian
        return a
    }

    func send(_ bytes: [UInt8], to port: UInt16) {
        var a = Self.address(port)
        _ = withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, bytes.count, 0, sa, 16) }
            }
        }
    }

    func connect(to port: UInt16) throws {
        var a = Self.address(port)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, 16) } }
    }

    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 2048)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 2048, 0) }
        return n < 0 ? nil : Array(buffer[0..<n])
    }

    func close() { Glibc.close(fd) }
}

/// A connected TCP pair on 127.0.0.2: `server` (the reactor's side) and `client`.
struct TCPPair {
    let server: Int32
    let client: Int32

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(listener) }
        var a = LoopbackUDP.address(0)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, 16) } }
        listen(listener, 1)
        var length = socklen_t(16)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(c, $0, 16) } }
        client = c
        server = accept(listener, nil, nil)
    }

    func close() {
        Glibc.close(server)
        Glibc.close(client)
    }
}

/// msghdrs for sendMessage submissions, each with its own name, iovec,
/// payload and (for GSO) control bytes, at stable addresses.
struct SendMessages {
    let headers: UnsafeMutablePointer<msghdr>
    let names: UnsafeMutablePointer<sockaddr_in6>
    let vectors: UnsafeMutablePointer<iovec>
    let payloads: UnsafeMutableRawPointer
    let controls: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) {
        self.count = count
        headers = .allocate(capacity: count)
        headers.initialize(repeating: msghdr(), count: count)
        names = .allocate(capacity: count)
        names.initialize(repeating: sockaddr_in6(), count: count)
        vectors = .allocate(capacity: count)
        payloads = .allocate(byteCount: count * 2048, alignment: 8)
        controls = .allocate(byteCount: count * 64, alignment: 8)
    }

    func header(_ i: Int) -> UnsafePointer<msghdr> { UnsafePointer(headers + i) }

    func set(_ i: Int, bytes: [UInt8], to port: UInt16, segment: UInt16 = 0) {
        UnsafeMutableRawPointer(names + i).storeBytes(of: LoopbackUDP.address(port), as: sockaddr_in.self)
        fill(i, bytes: bytes, nameLength: 16, segment: segment)
    }

    func setIPv6(_ i: Int, bytes: [UInt8]) {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = UInt16(9).bigEndian
        a.sin6_addr.__in6_u.__u6_addr8.15 = 1
        names[i] = a
        fill(i, bytes: bytes, nameLength: MemoryLayout<sockaddr_in6>.size, segment: 0)
    }

    private func fill(_ i: Int, bytes: [UInt8], nameLength: Int, segment: UInt16) {
        let p = payloads + i * 2048
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        vectors[i] = iovec(iov_base: p, iov_len: bytes.count)
        var h = msghdr()
        h.msg_name = UnsafeMutableRawPointer(names + i)
        h.msg_namelen = socklen_t(nameLength)
        h.msg_iov = vectors + i
        h.msg_iovlen = 1
        if segment > 0 {
            h.msg_control = controls + i * 64
            h.msg_controllen = ControlMessages.writeUDPSegment(segment, to: controls + i * 64)
        }
        headers[i] = h
    }

    func free() {
        headers.deallocate()
        names.deallocate()
        vectors.deallocate()
        payloads.deallocate()
        controls.deallocate()
    }
}
