import Glibc
import Relay
import STUN
import TURN
import URing

/// A real relay engine (1 worker, io_uring) on 127.0.0.1 with one allocated
/// client and one peer, channel 0x4000 bound between them, for measuring the
/// worker's per-packet path end to end: `roundTrip()` sends one ChannelData
/// from the client, the peer receives it from the relayed address and sends
/// it back, and the client receives the ChannelData. That is two receives,
/// two routes (`routeChannelData`, `routePeerData`), two sends through the
/// send batcher and two send completions in the worker's `dispatch`.
///
/// Same approach as Tests/RelayTests/EngineHarness (not imported: test
/// targets cannot be). Everything is set up in `init`; `roundTrip()` uses only
/// file descriptors and preallocated memory (plain `sendto`/`recvfrom`), so
/// the test side of the loop allocates nothing and retains nothing either.
/// Traffic stays on 127.0.0.1.
public struct RelayFixture: ~Copyable {
    public static let channel: UInt16 = 0x4000
    /// Size of the ChannelData datagram: 4-byte header + 116 bytes of payload.
    public static let frameSize = 120
    static let realm = "relay.bench"
    static let username = "alice"
    static let password = "secret"

    /// The engine this fixture started, or nil when it drives an engine in
    /// another process (`init(port:receiveTimeout:)`, for the callgrind check).
    public let engine: Engine?
    public let server: TransportAddress
    public let relayed: TransportAddress
    let client: UDPSocket
    let peer: UDPSocket
    let serverAddress: UnsafeMutablePointer<sockaddr_storage>
    let serverAddressLength: socklen_t
    let relayedAddress: UnsafeMutablePointer<sockaddr_storage>
    let relayedAddressLength: socklen_t
    /// The ChannelData the client sends (and expects back: the peer echoes the payload).
    let frame: UnsafeMutableRawBufferPointer
    let scratch: UnsafeMutableRawBufferPointer
    let from: UnsafeMutablePointer<sockaddr_storage>
    let receiveTimeout: Duration

    /// STUN requests the setup sends (401 Allocate, Allocate, ChannelBind),
    /// each answered, so each handled exactly once by the worker's `handleSTUN`.
    public static let setupRequests = 3
    /// STUN requests `controlAllocateAndDelete()` sends (401 Allocate, Allocate, Refresh).
    public static let controlRequests = 3

    /// Starts an engine (1 worker) on a free loopback port and sets up the
    /// channel; traps with the reason if any step fails (a benchmark must not
    /// silently time an error path).
    public init(receiveTimeout: Duration = .seconds(5)) {
        let engine: Engine
        let server: TransportAddress
        do {
            (engine, server) = try Self.startEngine(port: Self.freePort())
        } catch {
            fatalError("RelayFixture: engine start failed: \(error)")
        }
        self.init(engine: engine, server: server, receiveTimeout: receiveTimeout)
    }

    /// Sets up the channel on an engine already listening on 127.0.0.1:`port`
    /// (another process: `RelayARCCheck serve`).
    public init(port: UInt16, receiveTimeout: Duration) {
        self.init(engine: nil, server: TransportAddress(ip: IPAddress(v4: 0x7F00_0001), port: port), receiveTimeout: receiveTimeout)
    }

    /// An engine as the benchmarks run it: 1 worker on 127.0.0.1:`port`, user
    /// alice, loopback peers allowed, relay ports from a 200-port slice.
    public static func startEngine(port: UInt16) throws -> (Engine, TransportAddress) {
        let loopback = IPAddress(v4: 0x7F00_0001)
        let server = TransportAddress(ip: loopback, port: port)
        var config = EngineConfig()
        config.listen = [server]
        config.relayIPv4 = loopback
        let relayBase = UInt16(20000 + Int(port) % 20000)
        config.minPort = relayBase
        config.maxPort = relayBase + 199
        config.workers = 1
        config.buffers = 256
        config.sendOperations = 64
        // UTURN_ARC_BACKEND=epoll: the same checks on the epoll backend.
        if let name = getenv("UTURN_ARC_BACKEND").map({ String(cString: $0) }) {
            guard let backend = BackendChoice(rawValue: name) else { fatalError("UTURN_ARC_BACKEND=\(name): io_uring, epoll or auto") }
            config.backend = backend
        }
        var turn = TURNConfiguration(
            credentials: CredentialStore(realm: Self.realm, users: [Self.username: Self.password]),
            peerPolicy: PeerPolicy(allowLoopbackPeers: true, serverAddresses: [server.ip]),
            nonces: NonceCodec(lifetime: 3600))
        turn.limits = TableLimits(maxAllocations: 64)
        // UTURN_ARC_LIMITS=1: every per-packet traffic limit on (rates far
        // above what the check sends, so nothing is dropped), so the window
        // covers the token buckets too.
        if getenv("UTURN_ARC_LIMITS").map({ String(cString: $0) }) == "1" {
            turn.rateLimits.maxBytesPerSecond = 1_000_000_000
            turn.rateLimits.userMaxBytesPerSecond = 2_000_000_000
            turn.rateLimits.capacityBytesPerSecond = 4_000_000_000
            turn.rateLimits.capacityPolicy = .share
            turn.rateLimits.maxPacketsPerSecond = 1_000_000
        }
        let engine = try Engine(config: config, turn: turn, log: { _, _ in })
        try engine.start()
        return (engine, server)
    }

    init(engine: Engine?, server: TransportAddress, receiveTimeout: Duration) {
        do {
            let client = try UDPSocket.bound(to: .loopbackV4(port: 0))
            let peer = try UDPSocket.bound(to: .loopbackV4(port: 0))
            try client.setReceiveTimeout(receiveTimeout)
            try peer.setReceiveTimeout(receiveTimeout)
            self.receiveTimeout = receiveTimeout
            let peerAddress = Self.transport(try peer.localAddress())

            let relayed = try Self.allocate(client: client, server: server, bindChannel: Self.channel, to: peerAddress)

            self.engine = engine
            self.server = server
            self.relayed = relayed
            self.client = client
            self.peer = peer
            (serverAddress, serverAddressLength) = Self.storage(server)
            (relayedAddress, relayedAddressLength) = Self.storage(relayed)
            frame = .allocate(byteCount: Self.frameSize, alignment: 16)
            frame.storeBytes(of: Self.channel.bigEndian, toByteOffset: 0, as: UInt16.self)
            frame.storeBytes(of: UInt16(Self.frameSize - 4).bigEndian, toByteOffset: 2, as: UInt16.self)
            for i in 4..<Self.frameSize { frame[i] = UInt8(truncatingIfNeeded: i &* 7) }
            scratch = .allocate(byteCount: 2048, alignment: 16)
            from = .allocate(capacity: 1)
            from.initialize(to: sockaddr_storage())
        } catch {
            fatalError("RelayFixture: setup failed: \(error)")
        }
        for _ in 0..<16 {
            precondition(roundTrip() == Self.frameSize, "RelayFixture: the relayed round trip failed at setup")
        }
    }

    deinit {
        engine?.stop()
        engine?.wait()
        client.close()
        peer.close()
        serverAddress.deallocate()
        relayedAddress.deallocate()
        frame.deallocate()
        scratch.deallocate()
        from.deallocate()
    }

    /// One relayed round trip: client → (ChannelData) → worker → peer, peer →
    /// worker → (ChannelData) → client. Returns the size of the ChannelData
    /// received back (`frameSize`), or 0 if anything timed out or differed.
    @inline(never)
    public func roundTrip() -> Int {
        let payload = Self.frameSize - 4
        guard sendto(client.rawValue, frame.baseAddress, Self.frameSize, 0, address(serverAddress), serverAddressLength)
            == Self.frameSize
        else { return 0 }
        // The peer gets the payload alone, from the relayed address.
        let atPeer = receive(peer)
        guard atPeer == payload, memcmp(scratch.baseAddress!, frame.baseAddress! + 4, payload) == 0 else { return 0 }
        guard sendto(peer.rawValue, scratch.baseAddress, payload, 0, address(relayedAddress), relayedAddressLength)
            == payload
        else { return 0 }
        // The client gets it back as ChannelData on the same channel.
        let atClient = receive(client)
        guard atClient == Self.frameSize, memcmp(scratch.baseAddress!, frame.baseAddress!, Self.frameSize) == 0 else {
            return 0
        }
        return atClient
    }

    /// Positive control for the callgrind check: a new client socket
    /// allocates (401 challenge, then an authenticated Allocate) and deletes
    /// the allocation again (Refresh with LIFETIME 0). The worker's control
    /// path does allocate and reference-count (the "allocation created" log
    /// line is a String; the username and configuration are ARC values).
    /// Not for measured loops.
    public func controlAllocateAndDelete() -> Bool {
        do {
            let c = try UDPSocket.bound(to: .loopbackV4(port: 0))
            defer { c.close() }
            try c.setReceiveTimeout(receiveTimeout)
            let nonce = try Self.allocateNonce(client: c, server: server)
            _ = try Self.authenticatedAllocate(client: c, server: server, nonce: nonce)
            let refresh = Self.request(.refresh, nonce: nonce) { e throws(STUNError) in try e.appendLifetime(0) }
            let ok = try Self.exchange(c, refresh, server) { $0.messageClass == .successResponse }
            return ok
        } catch {
            return false
        }
    }

    /// One Binding request from the client, answered (control path; allocates).
    /// RelayARCCheck uses it as a marker: the worker handles it in `handleSTUN`.
    public func binding() -> Bool {
        let request = Self.request(.binding, nonce: nil) { _ throws(STUNError) in }
        return (try? Self.exchange(client, request, server) { $0.messageClass == .successResponse ? true : nil }) ?? false
    }

    @inline(__always)
    private func address(_ p: UnsafeMutablePointer<sockaddr_storage>) -> UnsafePointer<Glibc.sockaddr> {
        UnsafeRawPointer(p).assumingMemoryBound(to: Glibc.sockaddr.self)
    }

    /// Blocking `recvfrom` into `scratch`; the byte count, or -1 on timeout/error.
    @inline(__always)
    private func receive(_ s: UDPSocket) -> Int {
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var n: Int
        repeat {
            n = recvfrom(
                s.rawValue, scratch.baseAddress, scratch.count, 0,
                UnsafeMutableRawPointer(from).assumingMemoryBound(to: Glibc.sockaddr.self), &len)
        } while n < 0 && errno == EINTR
        return n
    }

    // MARK: Setup (allocates freely)

    struct SetupError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    public static func freePort() throws -> UInt16 {
        let s = try UDPSocket.bound(to: .loopbackV4(port: 0))
        defer { s.close() }
        return try s.localAddress().port
    }

    static func transport(_ a: SocketAddress) -> TransportAddress {
        TransportAddress(ip: IPAddress(v4: UInt32(truncatingIfNeeded: a.low)), port: a.port)
    }

    static func storage(_ t: TransportAddress) -> (UnsafeMutablePointer<sockaddr_storage>, socklen_t) {
        let a = SocketAddress(v4: t.ip.v4, port: t.port)
        let p = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        p.initialize(to: a.storage)
        return (p, socklen_t(a.sockaddrLength))
    }

    static var key: IntegrityKey {
        try! IntegrityKey.longTerm(username: username, realm: realm, password: password, algorithm: .md5)
    }

    static func request(
        _ method: STUNMethod, nonce: [UInt8]?, _ body: (inout STUNEncoder) throws(STUNError) -> Void
    ) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 1500)
        let n = buf.withUnsafeMutableBytes { raw -> Int in
            do throws(STUNError) {
                var enc = try STUNEncoder(into: raw, method: method, class: .request, transactionID: .random())
                try body(&enc)
                if let nonce {
                    try enc.append(.username, utf8: username)
                    try enc.append(.realm, utf8: realm)
                    try enc.append(.nonce, utf8: String(decoding: nonce, as: UTF8.self))
                    try enc.appendMessageIntegrity(key: key)
                }
                return enc.count
            } catch {
                fatalError("RelayFixture: request encoding failed: \(error)")
            }
        }
        return Array(buf[0..<n])
    }

    /// Sends `bytes` to `server` and parses the response with `body`.
    static func exchange<R>(
        _ s: UDPSocket, _ bytes: [UInt8], _ server: TransportAddress, _ body: (STUNMessage) -> R?
    ) throws -> R {
        _ = try bytes.withUnsafeBytes { raw throws(URingError) in
            try s.send(raw, to: SocketAddress(v4: server.ip.v4, port: server.port))
        }
        var buf = [UInt8](repeating: 0, count: 2048)
        let got = try buf.withUnsafeMutableBytes { raw throws(URingError) in try s.receive(into: raw) }
        guard let (n, _) = got else { throw SetupError("no response from the engine (timeout)") }
        let result = buf[0..<n].withUnsafeBytes { raw in (try? STUNMessage(parsing: raw)).flatMap(body) }
        guard let result else { throw SetupError("unexpected response to a setup request") }
        return result
    }

    static func allocateNonce(client: UDPSocket, server: TransportAddress) throws -> [UInt8] {
        let first = request(.allocate, nonce: nil) { e throws(STUNError) in try e.appendRequestedTransport(17) }
        return try exchange(client, first, server) { m -> [UInt8]? in
            guard m.errorCode?.code == 401 else { return nil }
            return m.nonceBytes.map(Array.init)
        }
    }

    static func authenticatedAllocate(client: UDPSocket, server: TransportAddress, nonce: [UInt8]) throws
        -> TransportAddress
    {
        let allocate = request(.allocate, nonce: nonce) { e throws(STUNError) in try e.appendRequestedTransport(17) }
        return try exchange(client, allocate, server) { m in
            m.messageClass == .successResponse ? m.xorRelayedAddress : nil
        }
    }

    /// 401 → authenticated Allocate → ChannelBind. Returns the relayed address.
    static func allocate(client: UDPSocket, server: TransportAddress, bindChannel channel: UInt16, to peer: TransportAddress)
        throws -> TransportAddress
    {
        let nonce = try allocateNonce(client: client, server: server)
        let relayed = try authenticatedAllocate(client: client, server: server, nonce: nonce)
        let bind = request(.channelBind, nonce: nonce) { e throws(STUNError) in
            try e.appendChannelNumber(channel)
            try e.append(.xorPeerAddress, xorAddress: peer)
        }
        guard try exchange(client, bind, server, { $0.messageClass == .successResponse ? true : nil }) else {
            throw SetupError("ChannelBind refused")
        }
        return relayed
    }
}
