import STUN
import TURN

/// A relay-port provider that opens nothing: it hands out fake endpoints on
/// 203.0.113.1 / 2001:db8::1 with rolling ports, so `handleSTUN` runs its
/// whole Allocate path without sockets. Trivial struct, no heap.
public struct FakeRelayPorts: RelayPortProvider {
    var nextPort: UInt16 = 49152
    public private(set) var opened = 0
    public private(set) var closed = 0

    public init() {}

    public mutating func openRelay(for id: AllocationID, family: IPAddress.Family, evenPort: Bool, reserveNext: Bool)
        -> RelayEndpoint?
    {
        if evenPort && nextPort & 1 == 1 { nextPort &+= 1 }
        let port = nextPort
        nextPort = nextPort >= 65000 ? 49152 : nextPort + (reserveNext ? 2 : 1)
        opened += 1
        let ip = family == .v4 ? IPAddress(v4: 0xCB00_7101) : IPAddress(v6High: 0x2001_0DB8_0000_0000, v6Low: 1)
        return RelayEndpoint(address: TransportAddress(ip: ip, port: port), handle: UInt64(port))
    }

    public mutating func openReservedRelay(for id: AllocationID, token: UInt64) -> RelayEndpoint? { nil }

    public mutating func closeRelay(_ endpoint: RelayEndpoint) { closed += 1 }
}

enum TURNSetup {
    static let realm = "example.org"
    static let username = "alice"
    static let password = "secret"
    static let serverAddress = TransportAddress(ip: IPAddress(v4: 0xCB00_7101), port: 3478)  // 203.0.113.1:3478

    /// A server with one static user. Nonces never go stale (the control
    /// benchmark moves the clock 40 s per round to age out the response cache).
    static func makeServer(
        maxAllocations: Int, now: MonotonicTime, sourceLimits: SourceRateLimits = SourceRateLimits()
    ) -> TURNServer {
        var config = TURNConfiguration(
            credentials: CredentialStore(realm: realm, users: [username: password]),
            peerPolicy: PeerPolicy(serverAddresses: [serverAddress.ip]),
            nonces: NonceCodec(secret: [UInt8](repeating: 9, count: 32), lifetime: UInt32.max))
        config.limits = TableLimits(maxAllocations: maxAllocations)
        config.sourceLimits = sourceLimits
        return TURNServer(configuration: config, quotas: AllocationQuotas(), now: now)
    }

    /// Encodes one request into a fresh buffer; `sign` appends USERNAME,
    /// REALM, NONCE and MESSAGE-INTEGRITY with the user's long-term key.
    static func request(
        _ method: STUNMethod, class cls: STUNClass = .request, nonce: [UInt8]?, key: IntegrityKey,
        _ body: (inout STUNEncoder) throws(STUNError) -> Void
    ) -> Buffer {
        var buffer = Buffer(capacity: 1500)
        let tid = TransactionID.random()
        let raw = buffer.raw
        do throws(STUNError) {
            var enc = try STUNEncoder(into: raw, method: method, class: cls, transactionID: tid)
            try body(&enc)
            if let nonce {
                try enc.append(.username, utf8: username)
                try enc.append(.realm, utf8: realm)
                let n = String(decoding: nonce, as: UTF8.self)
                try enc.append(.nonce, utf8: n)
                try enc.appendMessageIntegrity(key: key)
            }
            buffer.count = enc.count
        } catch {
            fatalError("request encoding failed: \(error)")
        }
        return buffer
    }

    /// Parses a response (setup-time checks only).
    static func check(_ out: borrowing Buffer, _ length: Int, _ what: String, _ body: (STUNMessage) -> Bool) {
        precondition(length > 0, "\(what): no response")
        let m = try! STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: out.raw[0..<length]))
        precondition(body(m), "\(what): unexpected response \(m.messageClass) \(m.errorCode?.code ?? 0)")
    }
}

/// The control path: one client's authenticated Allocate, CreatePermission,
/// ChannelBind and Refresh (LIFETIME 0, which deletes the allocation again,
/// so the table never fills), all through `TURNServer.handleSTUN`.
///
/// The four signed requests are built once. Each round moves the clock 40 s
/// ahead so the retransmission cache (40 s) answers none of them from cache:
/// every round does the full work (nonce check, key derivation, HMAC verify,
/// table updates, signed responses).
public struct ControlFixture: ~Copyable {
    public var server: TURNServer
    public var relays = FakeRelayPorts()
    public var now = MonotonicTime.seconds(10_000)
    public var unixTime: Int64 = 1_700_000_000
    public var client = FiveTuple(
        client: TransportAddress(ip: IPAddress(v4: 0xC633_6407), port: 40000), server: TURNSetup.serverAddress)
    public var allocate: Buffer
    public var createPermission: Buffer
    public var channelBind: Buffer
    public var refresh: Buffer
    public var binding: Buffer
    public var out = Buffer(capacity: 1500)

    public init() {
        server = TURNSetup.makeServer(maxAllocations: 16, now: MonotonicTime.seconds(10_000))
        let key = try! IntegrityKey.longTerm(username: TURNSetup.username, realm: TURNSetup.realm, password: TURNSetup.password)
        // Learn a nonce: an unsigned Allocate gets 401 with REALM and NONCE.
        let probe = TURNSetup.request(.allocate, nonce: nil, key: key) { (e) throws(STUNError) in
            try e.appendRequestedTransport(17)
        }
        let challenge = server.handleSTUN(
            probe.bytes, from: client, now: now, unixTime: unixTime, response: out.raw, relays: &relays)
        TURNSetup.check(out, challenge.responseLength, "challenge") { $0.errorCode?.code == 401 }
        let nonce = try! STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: out.raw[0..<challenge.responseLength]))
            .nonceBytes.map(Array.init)!

        let peer = TransportAddress(ip: IPAddress(v4: 0x0808_0808), port: 5000)
        allocate = TURNSetup.request(.allocate, nonce: nonce, key: key) { (e) throws(STUNError) in
            try e.appendRequestedTransport(17)
        }
        createPermission = TURNSetup.request(.createPermission, nonce: nonce, key: key) { (e) throws(STUNError) in
            try e.append(.xorPeerAddress, xorAddress: peer)
        }
        channelBind = TURNSetup.request(.channelBind, nonce: nonce, key: key) { (e) throws(STUNError) in
            try e.appendChannelNumber(0x4001)
            try e.append(.xorPeerAddress, xorAddress: peer)
        }
        refresh = TURNSetup.request(.refresh, nonce: nonce, key: key) { (e) throws(STUNError) in
            try e.appendLifetime(0)
        }
        binding = TURNSetup.request(.binding, nonce: nil, key: key) { _ in }

        // One round by hand, checking every response, then one through the op.
        now = now.adding(seconds: 40)
        let steps: [(String, Int)] = [
            ("Allocate", 0), ("CreatePermission", 1), ("ChannelBind", 2), ("Refresh", 3),
        ]
        for (name, i) in steps {
            let packet = i == 0 ? allocate.bytes : i == 1 ? createPermission.bytes : i == 2 ? channelBind.bytes : refresh.bytes
            let o = server.handleSTUN(packet, from: client, now: now, unixTime: unixTime, response: out.raw, relays: &relays)
            TURNSetup.check(out, o.responseLength, name) { $0.messageClass == .successResponse && $0.verifyMessageIntegrity(key: key) }
        }
        precondition(server.tables.count == 0)
        precondition(ControlOps.allocatePermitBindRefresh(&self) > 0, "control round failed")
        precondition(ControlOps.binding(&self) > 0, "binding failed")
        precondition(server.tables.count == 0 && relays.opened == relays.closed)
    }
}

/// The data path with `allocationCount` allocations present. Allocation `i`
/// belongs to client 198.18.x.y:(10000+i) and has a permission for two
/// peers: `channelPeers[i]` (bound to channel 0x4001) and `plainPeers[i]`
/// (no channel, so its data goes in a Data indication).
///
/// The per-allocation lookup keys live in raw buffers, so walking them
/// round-robin in the measured loop touches no reference-counted storage.
public struct DataPathFixture: ~Copyable {
    public static let allocationCount = 1000
    public static let channel: UInt16 = 0x4001
    public static let payloadLength = 160
    public static let packetStride = 256

    public var server: TURNServer
    public var relays = FakeRelayPorts()
    public var now = MonotonicTime.seconds(10_000)
    public var unixTime: Int64 = 1_700_000_000
    public var fiveTuples: UnsafeMutableBufferPointer<FiveTuple>
    public var ids: UnsafeMutableBufferPointer<AllocationID>
    public var channelPeers: UnsafeMutableBufferPointer<TransportAddress>
    public var plainPeers: UnsafeMutableBufferPointer<TransportAddress>
    /// One Send indication per allocation (to its plain peer) at `i * packetStride`.
    public var sendIndications: Buffer
    public var sendLength: Int
    public var out = Buffer(capacity: 1500)

    public init() {
        let n = Self.allocationCount
        let start = MonotonicTime.seconds(10_000)
        server = TURNSetup.makeServer(maxAllocations: 1024, now: start)
        fiveTuples = .allocate(capacity: n)
        ids = .allocate(capacity: n)
        channelPeers = .allocate(capacity: n)
        plainPeers = .allocate(capacity: n)
        sendIndications = Buffer(capacity: n * Self.packetStride)
        var length = 0
        for i in 0..<n {
            let client = TransportAddress(ip: IPAddress(v4: 0xC612_0000 | UInt32(i)), port: UInt16(10000 + i))
            let tuple = FiveTuple(client: client, server: TURNSetup.serverAddress)
            let channelPeer = TransportAddress(ip: IPAddress(v4: 0x0808_0000 | UInt32(i)), port: 5000)
            let plainPeer = TransportAddress(ip: IPAddress(v4: 0x0101_0000 | UInt32(i)), port: 6000)
            let id = server.tables.create(fiveTuple: tuple, lifetime: 3600, now: start)!
            let relay = RelayEndpoint(
                address: TransportAddress(ip: TURNSetup.serverAddress.ip, port: UInt16(50000 + i)), handle: UInt64(i))
            server.tables.setRelays(id, v4: relay, v6: nil)
            let permitted1 = server.tables.installPermission(channelPeer.ip, in: id, now: start)
            let permitted2 = server.tables.installPermission(plainPeer.ip, in: id, now: start)
            let bound = server.tables.bindChannel(Self.channel, to: channelPeer, in: id, now: start)
            precondition(permitted1 && permitted2 && bound == .bound)
            fiveTuples.initializeElement(at: i, to: tuple)
            ids.initializeElement(at: i, to: id)
            channelPeers.initializeElement(at: i, to: channelPeer)
            plainPeers.initializeElement(at: i, to: plainPeer)

            let slot = UnsafeMutableRawBufferPointer(
                rebasing: sendIndications.raw[(i * Self.packetStride)..<((i + 1) * Self.packetStride)])
            do throws(STUNError) {
                var enc = try STUNEncoder(
                    into: slot, method: .send, class: .indication,
                    transactionID: TransactionID(high: UInt32(i), low: 0x5EED))
                try enc.append(.xorPeerAddress, xorAddress: plainPeer)
                try enc.reserve(.data, length: Self.payloadLength)
                    .initializeMemory(as: UInt8.self, repeating: 0xAB, count: Self.payloadLength)
                length = enc.count
            } catch {
                fatalError("Send indication encoding failed: \(error)")
            }
        }
        sendLength = length
        precondition(server.tables.count == n)

        for i in 0..<n {
            precondition(DataPathOps.routeChannelData(self, i) == Int(channelPeers[i].port) + Int(ids[i].slot))
            precondition(DataPathOps.routePeerDataChannel(self, i) == Int(Self.channel))
            precondition(DataPathOps.routePeerDataIndication(self, i) == 1)
            precondition(DataPathOps.isPermitted(self, i) == 1)
            precondition(DataPathOps.sendIndication(&self, i) == Self.payloadLength)
        }
    }

    deinit {
        fiveTuples.deallocate()
        ids.deallocate()
        channelPeers.deallocate()
        plainPeers.deallocate()
    }
}

/// The measured TURN operations, never inlined (see `STUNOps`).
public enum ControlOps {
    /// One client's Allocate, CreatePermission, ChannelBind and Refresh
    /// (LIFETIME 0) through `handleSTUN`. Returns the sum of the response
    /// lengths, or -1 when any step did not take its success path.
    @inline(never)
    public static func allocatePermitBindRefresh(_ f: inout ControlFixture) -> Int {
        f.now = f.now.adding(seconds: 40)
        let a = f.server.handleSTUN(
            f.allocate.bytes, from: f.client, now: f.now, unixTime: f.unixTime, response: f.out.raw, relays: &f.relays)
        guard case .allocationCreated = a.effect else { return -1 }
        let p = f.server.handleSTUN(
            f.createPermission.bytes, from: f.client, now: f.now, unixTime: f.unixTime, response: f.out.raw,
            relays: &f.relays)
        let c = f.server.handleSTUN(
            f.channelBind.bytes, from: f.client, now: f.now, unixTime: f.unixTime, response: f.out.raw, relays: &f.relays)
        guard p.effect == .none, c.effect == .none, p.responseLength > 0, c.responseLength > 0,
            f.out.raw[1] == 0x09  // ChannelBind success response type 0x0109
        else { return -1 }
        let r = f.server.handleSTUN(
            f.refresh.bytes, from: f.client, now: f.now, unixTime: f.unixTime, response: f.out.raw, relays: &f.relays)
        guard case .allocationDeleted = r.effect else { return -1 }
        return a.responseLength + p.responseLength + c.responseLength + r.responseLength
    }

    /// An unauthenticated Binding request through `handleSTUN`.
    @inline(never)
    public static func binding(_ f: inout ControlFixture) -> Int {
        let o = f.server.handleSTUN(
            f.binding.bytes, from: f.client, now: f.now, unixTime: f.unixTime, response: f.out.raw, relays: &f.relays)
        return o.responseLength
    }
}

/// The measured per-packet lookups; `i` picks the allocation (0..<1000).
public enum DataPathOps {
    /// Client → peer ChannelData: 5-tuple → allocation → channel → peer (+ permission).
    @inline(never)
    public static func routeChannelData(_ f: borrowing DataPathFixture, _ i: Int) -> Int {
        guard let (id, peer) = f.server.routeChannelData(channel: DataPathFixture.channel, from: f.fiveTuples[i], now: f.now)
        else { return -1 }
        return Int(peer.port) + Int(id.slot)
    }

    /// Peer → client for a peer with a channel: permission, then channel by peer.
    @inline(never)
    public static func routePeerDataChannel(_ f: borrowing DataPathFixture, _ i: Int) -> Int {
        switch f.server.routePeerData(to: f.ids[i], from: f.channelPeers[i], now: f.now) {
        case .channel(let number, _): return Int(number)
        case .dataIndication: return -2
        case .drop: return -1
        }
    }

    /// Peer → client for a permitted peer without a channel (Data indication).
    @inline(never)
    public static func routePeerDataIndication(_ f: borrowing DataPathFixture, _ i: Int) -> Int {
        switch f.server.routePeerData(to: f.ids[i], from: f.plainPeers[i], now: f.now) {
        case .channel: return -2
        case .dataIndication: return 1
        case .drop: return -1
        }
    }

    /// The permission check alone.
    @inline(never)
    public static func isPermitted(_ f: borrowing DataPathFixture, _ i: Int) -> Int {
        f.server.tables.isPermitted(f.plainPeers[i].ip, in: f.ids[i], now: f.now) ? 1 : 0
    }

    /// Client → peer Send indication through `handleSTUN` (parse, allocation,
    /// permission). Returns the payload length to relay.
    @inline(never)
    public static func sendIndication(_ f: inout DataPathFixture, _ i: Int) -> Int {
        let packet = UnsafeRawBufferPointer(
            rebasing: f.sendIndications.raw[(i * DataPathFixture.packetStride)..<(i * DataPathFixture.packetStride + f.sendLength)])
        let o = f.server.handleSTUN(packet, from: f.fiveTuples[i], now: f.now, unixTime: f.unixTime, response: f.out.raw, relays: &f.relays)
        guard case .sendToPeer(_, _, let payload, _) = o.effect else { return -1 }
        return payload.count
    }
}

/// The junk path under the per-source request limits: a source that has
/// used up its refusals (1 per second, burst 2) keeps sending an
/// unauthenticated Allocate, which `handleSTUN` drops unanswered, and the
/// worker asks how long to block it in the kernel; and a 5-tuple with no
/// allocation sending what gets no answer is charged to its source's
/// bucket for those (`unansweredBlockNanoseconds`). The clock stands
/// still, so every measured call takes the drop path.
public struct JunkFixture: ~Copyable {
    public var server: TURNServer
    public var relays = FakeRelayPorts()
    public var now = MonotonicTime.seconds(10_000)
    public var unixTime: Int64 = 1_700_000_000
    public var source = FiveTuple(
        client: TransportAddress(ip: IPAddress(v4: 0xC633_6409), port: 40000), server: TURNSetup.serverAddress)
    public var junk: Buffer
    public var out = Buffer(capacity: 1500)

    public init() {
        server = TURNSetup.makeServer(
            maxAllocations: 16, now: MonotonicTime.seconds(10_000),
            sourceLimits: SourceRateLimits(failedPerSecond: 1, bindingPerSecond: 1, failedTotalPerSecond: 100))
        let key = try! IntegrityKey.longTerm(username: TURNSetup.username, realm: TURNSetup.realm, password: TURNSetup.password)
        // Two 401s use up the burst; the third request is dropped.
        for _ in 0..<2 {
            let r = TURNSetup.request(.allocate, nonce: nil, key: key) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
            let o = server.handleSTUN(r.bytes, from: source, now: now, unixTime: unixTime, response: out.raw, relays: &relays)
            TURNSetup.check(out, o.responseLength, "challenge") { $0.errorCode?.code == 401 }
        }
        junk = TURNSetup.request(.allocate, nonce: nil, key: key) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }
        precondition(JunkOps.rateLimitedDrop(&self) > 0, "the junk request was not dropped for its rate")
        for _ in 0..<2 { _ = server.unansweredBlockNanoseconds(from: source, now: now) }
        precondition(JunkOps.unansweredCharge(&self) > 0, "the unanswered bucket did not run out")
    }
}

/// The measured junk-path operations.
public enum JunkOps {
    /// An unauthenticated Allocate from a source over its refusal limit:
    /// dropped before any parsing beyond the header, then the block's
    /// length for the kernel source filter. Returns the block's length in
    /// microseconds (> 0), or 0 when it was not dropped for its rate.
    @inline(never)
    public static func rateLimitedDrop(_ f: inout JunkFixture) -> Int {
        let o = f.server.handleSTUN(
            f.junk.bytes, from: f.source, now: f.now, unixTime: f.unixTime, response: f.out.raw, relays: &f.relays)
        guard case .dropped(.rateLimitedUnauthenticated) = o.effect, o.responseLength == 0 else { return 0 }
        return Int(f.server.sourceBlockNanoseconds(after: .rateLimitedUnauthenticated, from: f.source, now: f.now) / 1000)
    }

    /// A datagram no one answers from a 5-tuple with no allocation, past
    /// its source's bucket: the block's length in microseconds (> 0).
    @inline(never)
    public static func unansweredCharge(_ f: inout JunkFixture) -> Int {
        Int(f.server.unansweredBlockNanoseconds(from: f.source, now: f.now) / 1000)
    }
}
