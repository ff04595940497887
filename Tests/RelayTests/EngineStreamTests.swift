import Glibc
import Relay
import STUN
import TURN
import Testing
import URing

/// A blocking TCP connection to the engine with a receive timeout, reading
/// whole frames (STUN messages, ChannelData with its padding) off the stream.
final class TestStream {
    let fd: Int32
    var buffer: [UInt8] = []

    init(to server: TransportAddress) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let r = SocketAddress(server).withSockaddr { Glibc.connect(fd, $0, $1) }
        try #require(r == 0, "connect: errno \(errno)")
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(n == bytes.count)
    }

    /// The next whole frame, or nil on timeout or end of stream.
    func frame() -> [UInt8]? {
        while true {
            if buffer.count >= 4 {
                let length = Int(buffer[2]) << 8 | Int(buffer[3])
                let total = buffer[0] < 0x40 ? 20 + length : 4 + (length + 3) & ~3
                if buffer.count >= total {
                    defer { buffer.removeFirst(total) }
                    return Array(buffer[0..<total])
                }
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }

    /// True once the server has closed the connection (end of stream or reset).
    /// errno is read only when recv failed: after an end of stream (0) it
    /// holds whatever an earlier call on this thread left there (an EAGAIN
    /// left by another socket once made this report "open").
    var closedByServer: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        if n == 0 { return true }
        return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
    }
}

/// TURN over TCP through the real engine: Allocate, ChannelBind to a UDP
/// peer, ChannelData both ways padded to 4 bytes (RFC 8656 §12.5).
@Suite("Engine over TCP", .serialized)
struct EngineStreamTests {
    static func tcpHarness(singleShot: Bool = false) throws -> EngineHarness {
        try EngineHarness { c in
            c.tcpListen = c.listen
            c.singleShotReceive = singleShot
        }
    }

    static func allocate(_ s: TestStream, tc: inout TURNClient, peer: TransportAddress, channel: UInt16) throws
        -> TransportAddress
    {
        s.send(tc.request(.allocate, sign: false) { e throws(STUNError) in try e.appendRequestedTransport(17) })
        let challenge = try #require(s.frame())
        tc.nonce = try #require(TURNClient.parse(challenge) { $0.nonceBytes.map(Array.init) } ?? nil)
        s.send(tc.request(.allocate) { e throws(STUNError) in try e.appendRequestedTransport(17) })
        let ok = try #require(s.frame())
        let relayed = try #require(TURNClient.parse(ok) { $0.xorRelayedAddress } ?? nil)
        s.send(tc.request(.channelBind) { e throws(STUNError) in
            try e.appendChannelNumber(channel)
            try e.append(.xorPeerAddress, xorAddress: peer)
        })
        let bound = try #require(s.frame())
        #expect(TURNClient.parse(bound) { $0.messageClass } == .successResponse)
        return relayed
    }

    @Test("ChannelData both ways over TCP, every length mod 4", arguments: [false, true])
    func channelDataOverTCP(singleShot: Bool) throws {
        let h = try Self.tcpHarness(singleShot: singleShot)
        let s = try TestStream(to: h.server)
        let peer = try TestSocket()
        var tc = TURNClient()
        let relayed = try Self.allocate(s, tc: &tc, peer: peer.address, channel: 0x4001)
        for n in [1, 2, 3, 4, 5, 100, 1001] {
            let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 3 &+ n) }
            let padding = [UInt8](repeating: 0, count: (4 - n % 4) % 4)
            s.send(EngineRelayTests.channelData(0x4001, payload) + padding)
            let atPeer = try #require(try peer.receive())
            #expect(atPeer.bytes == payload && atPeer.from == relayed)
            try peer.send(payload.reversed(), to: relayed)
            #expect(s.frame() == EngineRelayTests.channelData(0x4001, payload.reversed()) + padding)
        }
    }

    @Test("closing the connection deletes its allocation")
    func closeDeletesAllocation() throws {
        let h = try Self.tcpHarness()
        var s: TestStream? = try TestStream(to: h.server)
        let peer = try TestSocket()
        var tc = TURNClient()
        _ = try Self.allocate(s!, tc: &tc, peer: peer.address, channel: 0x4002)
        s = nil
        var deleted = false
        for _ in 0..<100 where !deleted {
            usleep(20_000)
            deleted = h.logs.all.contains { $0.contains("allocation closed with its connection") }
        }
        #expect(deleted)
    }

    @Test("bytes that are neither STUN nor ChannelData close the connection")
    func garbageCloses() throws {
        let h = try Self.tcpHarness()
        let s = try TestStream(to: h.server)
        s.send([0xC0, 0, 0, 4, 1, 2, 3, 4])
        #expect(s.closedByServer)
        let again = try TestStream(to: h.server)
        again.send(TURNClient().request(.binding, sign: false))
        let reply = try #require(again.frame())
        #expect(TURNClient.parse(reply) { $0.messageClass } == .successResponse)
    }
}
