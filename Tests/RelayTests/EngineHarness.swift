import Glibc
import Relay
import Synchronization
import STUN
import TURN
import Testing
import URing

/// Starts a real engine on 127.0.0.1 (a free port) and talks to it with plain
/// UDP sockets: the packets cross the kernel and the io_uring workers.
/// Log lines an engine wrote, for tests that check what it logs.
final class LogLines: Sendable {
    let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

final class EngineHarness {
    let engine: Engine
    let logs = LogLines()
    let server: TransportAddress
    /// The TURN configuration the engine started with (for reload tests).
    let turn: TURNConfiguration
    static let realm = "relay.test"

    init(
        workers: Int = 1, allowLoopback: Bool = true, ipv6: Bool = false,
        configure: (inout EngineConfig) -> Void = { _ in }, configureLimits: (inout TableLimits) -> Void = { _ in },
        configureTURN: (inout TURNConfiguration) -> Void = { _ in }
    ) throws {
        let port = try EngineHarness.freePort()
        let loopback = ipv6 ? IPAddress(v6High: 0, v6Low: 1) : IPAddress(v4: 0x7F00_0001)
        server = TransportAddress(ip: loopback, port: port)
        var config = EngineConfig()
        config.listen = [server]
        if ipv6 { config.relayIPv6 = loopback } else { config.relayIPv4 = loopback }
        // Each harness gets its own 200 relay ports, below the ephemeral
        // range (32768+): engines started by tests running in parallel
        // never share a relay port, and no client socket takes one.
        let relayBase = UInt16(20000 + Self.nextRelayBlock() % 50 * 200)
        config.minPort = relayBase
        config.maxPort = relayBase + 199
        config.workers = workers
        config.buffers = 256
        config.sendOperations = 64
        // UTURN_TEST_BACKEND=epoll runs every engine test on the epoll backend.
        if let name = getenv("UTURN_TEST_BACKEND").map({ String(cString: $0) }),
            let backend = BackendChoice(rawValue: name)
        {
            config.backend = backend
        }
        configure(&config)
        var turn = TURNConfiguration(
            credentials: CredentialStore(realm: Self.realm, users: ["alice": "secret", "bob": "secret"]),
            peerPolicy: PeerPolicy(allowLoopbackPeers: allowLoopback, serverAddresses: [server.ip]),
            nonces: NonceCodec(lifetime: 600))
        turn.limits = TableLimits(maxAllocations: 64)
        configureLimits(&turn.limits)
        configureTURN(&turn)
        self.turn = turn
        let logs = self.logs
        engine = try Engine(config: config, turn: turn, log: { level, message in logs.append("\(level) \(message)") })
        try engine.start()
    }

    deinit {
        engine.stop()
        engine.wait()
    }

    /// A port that was free a moment ago (bind to 0, read it back, close),
    /// never one handed out before in this process: two engines of tests
    /// running in parallel must not both take it (with SO_REUSEPORT both
    /// could bind it and the kernel would split a test's packets between them).
    static func freePort() throws -> UInt16 {
        while true {
            let s = try UDPSocket.bound(to: .loopbackV4(port: 0))
            defer { s.close() }
            let port = try s.localAddress().port
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
    }

    private static let handedOut = Mutex<Set<UInt16>>([])
    private static let relayBlocks = Atomic<Int>(0)

    static func nextRelayBlock() -> Int { relayBlocks.add(1, ordering: .relaxed).oldValue }
}

/// A UDP socket on 127.0.0.1 with a receive timeout, for clients and peers.
final class TestSocket {
    let socket: UDPSocket
    let address: TransportAddress

    init(ipv6: Bool = false) throws {
        socket = try UDPSocket.bound(to: ipv6 ? .loopbackV6(port: 0) : .loopbackV4(port: 0))
        try socket.setReceiveTimeout(.seconds(2))
        address = TransportAddress(try socket.localAddress())
    }

    deinit { socket.close() }

    func send(_ bytes: [UInt8], to destination: TransportAddress) throws {
        let d = SocketAddress(destination)
        _ = try bytes.withUnsafeBytes { raw throws(URingError) in try socket.send(raw, to: d) }
    }

    /// Sends `datagrams` (all the same size but the last) as one GSO train:
    /// one sendmsg with a UDP_SEGMENT control message, as a coalescing sender would.
    func sendTrain(_ datagrams: [[UInt8]], to destination: TransportAddress) throws {
        let bytes = datagrams.flatMap { $0 }
        var name = sockaddr_storage()
        let nameLength = withUnsafeMutableBytes(of: &name) { destination.store(sockaddr: $0.baseAddress!) }
        var control = [UInt64](repeating: 0, count: 4)
        let sent = bytes.withUnsafeBytes { raw -> Int in
            var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress!), iov_len: raw.count)
            return withUnsafeMutablePointer(to: &iov) { iovp in
                withUnsafeMutablePointer(to: &name) { namep in
                    control.withUnsafeMutableBytes { c in
                        var msg = msghdr()
                        msg.msg_name = UnsafeMutableRawPointer(namep)
                        msg.msg_namelen = nameLength
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = c.baseAddress
                        msg.msg_controllen = ControlMessages.writeUDPSegment(
                            UInt16(datagrams[0].count), to: c.baseAddress!)
                        return Glibc.sendmsg(socket.rawValue, &msg, 0)
                    }
                }
            }
        }
        #expect(sent == bytes.count, "GSO sendmsg: \(sent) errno \(errno)")
    }

    /// The next datagram, or nil after the timeout.
    func receive() throws -> (bytes: [UInt8], from: TransportAddress)? {
        var buf = [UInt8](repeating: 0, count: 2048)
        let got = try buf.withUnsafeMutableBytes { raw throws(URingError) in try socket.receive(into: raw) }
        guard let (n, from) = got else { return nil }
        return (Array(buf[0..<n]), TransportAddress(from))
    }
}

/// Builds client requests with the STUN encoder, signed with the long-term key.
struct TURNClient {
    var username = "alice"
    var password = "secret"
    var nonce: [UInt8] = []

    var key: IntegrityKey {
        try! IntegrityKey.longTerm(username: username, realm: EngineHarness.realm, password: password, algorithm: .md5)
    }

    func request(_ method: STUNMethod, sign: Bool = true, _ body: (inout STUNEncoder) throws(STUNError) -> Void = { _ in })
        -> [UInt8]
    {
        var buf = [UInt8](repeating: 0, count: 1500)
        let n = buf.withUnsafeMutableBytes { raw -> Int in
            do throws(STUNError) {
                var enc = try STUNEncoder(into: raw, method: method, class: .request, transactionID: .random())
                try body(&enc)
                if sign {
                    try enc.append(.username, utf8: username)
                    try enc.append(.realm, utf8: EngineHarness.realm)
                    var failure: STUNError?
                    nonce.withUnsafeBytes { b in
                        do throws(STUNError) { try enc.append(.nonce, bytes: b) } catch { failure = error }
                    }
                    if let failure { throw failure }
                    try enc.appendMessageIntegrity(key: key)
                }
                return enc.count
            } catch {
                Issue.record("encode failed: \(error)")
                return 0
            }
        }
        return Array(buf[0..<n])
    }

    static func parse<R>(_ bytes: [UInt8], _ body: (STUNMessage) -> R) -> R? {
        bytes.withUnsafeBytes { raw in (try? STUNMessage(parsing: raw)).map(body) }
    }
}
