import STUN
import Testing

@testable import TURN

/// A fake relay-port provider: hands out ports until `available` runs out.
struct FakeRelays: RelayPortProvider {
    var available = 100
    var nextPort: UInt16 = 50000
    var opened: [RelayEndpoint] = []
    var closed: [RelayEndpoint] = []
    var reservations: [UInt64: UInt16] = [:]

    mutating func openRelay(for id: AllocationID, family: IPAddress.Family, evenPort: Bool, reserveNext: Bool) -> RelayEndpoint? {
        guard available > 0 else { return nil }
        available -= 1
        if evenPort && nextPort % 2 == 1 { nextPort += 1 }
        let ip = family == .v4 ? IPAddress("203.0.113.1")! : IPAddress("2001:db8::1")!
        var token: UInt64 = 0
        if reserveNext {
            token = 0xABCD_0000 + UInt64(nextPort)
            reservations[token] = nextPort + 1
        }
        let e = RelayEndpoint(address: TransportAddress(ip: ip, port: nextPort), handle: UInt64(nextPort), reservationToken: token)
        nextPort += reserveNext ? 2 : 1
        opened.append(e)
        return e
    }

    mutating func openReservedRelay(for id: AllocationID, token: UInt64) -> RelayEndpoint? {
        guard let port = reservations.removeValue(forKey: token) else { return nil }
        let e = RelayEndpoint(address: TransportAddress(ip: IPAddress("203.0.113.1")!, port: port), handle: UInt64(port))
        opened.append(e)
        return e
    }

    /// TCP relays (RFC 6062) share the port pool; their handles have bit 32 set.
    var tcpRelays = true

    mutating func openTCPRelay(for id: AllocationID, family: IPAddress.Family) -> RelayEndpoint? {
        guard tcpRelays, available > 0 else { return nil }
        available -= 1
        let ip = family == .v4 ? IPAddress("203.0.113.1")! : IPAddress("2001:db8::1")!
        let e = RelayEndpoint(address: TransportAddress(ip: ip, port: nextPort), handle: 1 << 32 | UInt64(nextPort))
        nextPort += 1
        opened.append(e)
        return e
    }

    mutating func closeRelay(_ endpoint: RelayEndpoint) { closed.append(endpoint) }
}

/// A response as bytes, with accessors that parse on demand.
struct Reply {
    var bytes: [UInt8]
    var outcome: STUNOutcome

    func with<R>(_ body: (STUNMessage) -> R) -> R {
        bytes.withUnsafeBytes { body(try! STUNMessage(parsing: $0)) }
    }
    var isEmpty: Bool { bytes.isEmpty }
    var messageClass: STUNClass { with { $0.messageClass } }
    var isSuccess: Bool { !isEmpty && messageClass == .successResponse }
    var errorCode: Int? { isEmpty ? nil : with { $0.errorCode?.code } }
    func has(_ type: STUNAttributeType) -> Bool { with { $0.contains(type) } }
    var lifetime: UInt32? { with { $0.lifetime } }
    var relayed: [TransportAddress] { with { Array($0.xorRelayedAddresses) } }
    var mapped: TransportAddress? { with { $0.xorMappedAddress } }
    var nonce: [UInt8]? { with { $0.nonceBytes.map(Array.init) } }
    var unknownAttributes: [UInt16] { with { m in m.unknownAttributes.map { $0.map(\.rawValue) } ?? [] } }
    var reservationToken: UInt64? { with { $0.reservationToken } }
    var addressErrorCode: Int? { with { $0.addressErrorCode?.code } }
    var transactionID: TransactionID { with { $0.transactionID } }
    func verifies(_ key: IntegrityKey, sha256: Bool = false) -> Bool {
        with { sha256 ? $0.verifyMessageIntegritySHA256(key: key) : $0.verifyMessageIntegrity(key: key) }
    }
}

/// A TURN client for tests: builds requests with the STUN encoder and signs
/// them with its long-term key.
struct TestClient {
    var fiveTuple: FiveTuple
    var username = "alice"
    var password = "secret"
    var realm = "example.org"
    var nonce: [UInt8] = []
    var useSHA256 = false
    var fingerprint = false

    init(_ client: String = "198.51.100.7:40000", server: String = "203.0.113.1:3478") {
        fiveTuple = FiveTuple(client: TransportAddress(client)!, server: TransportAddress(server)!)
    }

    var key: IntegrityKey {
        try! IntegrityKey.longTerm(username: username, realm: realm, password: password, algorithm: useSHA256 ? .sha256 : .md5)
    }

    /// Encodes a request; `sign` adds USERNAME/REALM/NONCE and integrity.
    func request(
        _ method: STUNMethod, transactionID: TransactionID = .random(), sign: Bool = true, cls: STUNClass = .request,
        _ body: (inout STUNEncoder) throws(STUNError) -> Void = { _ in }
    ) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 1500)
        let n = buf.withUnsafeMutableBytes { raw -> Int in
            do throws(STUNError) {
                var enc = try STUNEncoder(into: raw, method: method, class: cls, transactionID: transactionID)
                try body(&enc)
                if sign {
                    try enc.append(.username, utf8: username)
                    try enc.append(.realm, utf8: realm)
                    var n = nonce
                    var failure: STUNError?
                    n.withUnsafeMutableBytes { nb in
                        do throws(STUNError) { try enc.append(.nonce, bytes: UnsafeRawBufferPointer(nb)) } catch { failure = error }
                    }
                    if let failure { throw failure }
                    if useSHA256 {
                        var algs = (UInt32(0x0002_0000).bigEndian, UInt32(0x0001_0000).bigEndian)
                        try withUnsafeBytes(of: &algs) { (b) throws(STUNError) in try enc.append(.passwordAlgorithms, bytes: b) }
                        try enc.appendPasswordAlgorithm(.sha256)
                        try enc.appendMessageIntegritySHA256(key: key)
                    } else {
                        try enc.appendMessageIntegrity(key: key)
                    }
                }
                if fingerprint { try enc.appendFingerprint() }
                return enc.count
            } catch {
                Issue.record("encode failed: \(error)")
                return 0
            }
        }
        return Array(buf[0..<n])
    }
}

/// A server, a relay provider and a clock.
struct Harness: ~Copyable {
    var server: TURNServer
    var relays = FakeRelays()
    var now = MonotonicTime.seconds(10_000)
    var unixTime: Int64 = 1_700_000_000
    let quotas: AllocationQuotas

    static let secret = Array(repeating: UInt8(9), count: 32)

    init(
        quotas: AllocationQuotas = AllocationQuotas(), limits: TableLimits = TableLimits(maxAllocations: 16),
        sources: SourceBuckets? = nil, _ configure: (inout TURNConfiguration) -> Void = { _ in }
    ) {
        var config = TURNConfiguration(
            credentials: CredentialStore(realm: "example.org", users: ["alice": "secret", "bob": "hunter2"], rest: RESTCredentials(secrets: ["rest-secret", "old-secret"])),
            peerPolicy: PeerPolicy(serverAddresses: [IPAddress("203.0.113.1")!]),
            nonces: NonceCodec(secret: Harness.secret, lifetime: 600))
        config.limits = limits
        configure(&config)
        self.quotas = quotas
        server = TURNServer(configuration: config, quotas: quotas, sources: sources, now: now)
    }

    mutating func send(_ bytes: [UInt8], from client: TestClient) -> Reply {
        var out = [UInt8](repeating: 0, count: 1500)
        let outcome = bytes.withUnsafeBytes { pkt in
            out.withUnsafeMutableBytes { o in
                server.handleSTUN(pkt, from: client.fiveTuple, now: now, unixTime: unixTime, response: o, relays: &relays)
            }
        }
        return Reply(bytes: Array(out[0..<outcome.responseLength]), outcome: outcome)
    }

    /// Gets a nonce with an unauthenticated request (expects 401).
    mutating func learnNonce(_ client: inout TestClient) {
        let r = send(client.request(.allocate, sign: false) { (e) throws(STUNError) in try e.appendRequestedTransport(17) }, from: client)
        #expect(r.errorCode == 401)
        client.nonce = r.nonce ?? []
    }

    /// Authenticated Allocate for UDP; `extra` adds attributes.
    mutating func allocate(
        _ client: inout TestClient, transactionID: TransactionID = .random(),
        _ extra: (inout STUNEncoder) throws(STUNError) -> Void = { _ in }
    ) -> Reply {
        if client.nonce.isEmpty { learnNonce(&client) }
        return send(
            client.request(.allocate, transactionID: transactionID) { (e) throws(STUNError) in
                try e.appendRequestedTransport(17)
                try extra(&e)
            }, from: client)
    }

    mutating func createPermission(_ client: TestClient, _ peers: [String]) -> Reply {
        send(
            client.request(.createPermission) { (e) throws(STUNError) in
                for p in peers { try e.append(.xorPeerAddress, xorAddress: TransportAddress(p)!) }
            }, from: client)
    }

    mutating func channelBind(_ client: TestClient, _ number: UInt16, _ peer: String) -> Reply {
        send(
            client.request(.channelBind) { (e) throws(STUNError) in
                try e.appendChannelNumber(number)
                try e.append(.xorPeerAddress, xorAddress: TransportAddress(peer)!)
            }, from: client)
    }

    mutating func refresh(_ client: TestClient, lifetime: UInt32?) -> Reply {
        send(client.request(.refresh) { (e) throws(STUNError) in if let lifetime { try e.appendLifetime(lifetime) } }, from: client)
    }

    mutating func advance(_ seconds: UInt64) { now = now.adding(seconds: seconds) }

    var allocationCount: Int { server.tables.count }
}
