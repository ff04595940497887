// libFuzzer entry for the TURN state machine. Built by scripts/fuzz-turn:
// Sources/STUN as module STUN, then Sources/TURN/*.swift and this file as one
// module (so TURN's internals are visible here), with -sanitize=fuzzer,address.
//
// The input is a program in a small opcode language that drives ONE
// TURNServer (fake relay provider, static users + REST secret, 8 allocation
// slots, a per-user quota, RFC 6062 TCP relaying on) through handleSTUN,
// routeChannelData, routePeerData, nextExpired, removeAllocation and the
// TCP relay engine calls with an advancing clock.
// Requests are built with STUNEncoder and signed with the right long-term key
// (nonces are learnt from the server's 401/438 answers), so fuzz bytes reach
// allocations, permissions, channels, expiry and slot reuse.
//
// Every opcode reads its operands from the following bytes (0 once the input
// runs out). op = byte % 8:
//   0, 1  request from client k: method, class, transaction ID, attributes,
//         credentials and signing all chosen by the next bytes
//   2     advance the clock, then collect expired allocations
//   3     raw bytes as a packet from client k, or client k's last request
//         with one byte changed
//   4     ChannelData route query (client k, channel number); with bit 3
//         of the opcode set, a TCP relay engine call instead: connectCompleted,
//         peerConnectionArrived, removeConnection or nextClosedConnection
//   5     peer data route query (client k's allocation or a dead one, peer)
//   6     the engine removes client k's allocation (relay socket error)
//   7     client k retransmits its last request verbatim
//
// Invariants (precondition: a violation is a crash the fuzzer reports):
//   * a response to a request parses as STUN, has the request's transaction
//     ID, fits the 548-byte buffer and, unless the client reused the ID, is
//     a response of the request's method;
//   * tables.count never exceeds the limit and equals the allocations the
//     effects announced; every relay the provider holds open belongs to one
//     of them (no leaked or double-closed relay socket);
//   * a ChannelData route comes from a live allocation of that client, and a
//     peer route by channel agrees with the ChannelData route back;
//   * a verbatim retransmission of an Allocate or Refresh at the same
//     instant, with no other packet handled in between, gets the same bytes
//     (only those answers are cached: CreatePermission and ChannelBind are
//     idempotent and are simply processed again);
//   * RFC 6062 connections follow the effects and engine calls: an ID is
//     issued once, Connect is answered once (with its CONNECTION-ID, or 447),
//     only a connection awaiting its bind binds, one past its 30 s is
//     reported by nextExpiredConnection, and an allocation's connections are
//     reported by nextClosedConnection once it goes, each exactly once;
//   * once the clock passes every lifetime, tables.count == 0, no relay is
//     open, no connection is left and the quota counters are back to 0.

import Glibc
import STUN

/// TURN_FUZZ_TRACE=1 prints every packet, answer and effect (to read a crash input).
private let trace = getenv("TURN_FUZZ_TRACE") != nil

// MARK: - Fixed world

private let realm = "fuzz.example"
private let restSecret = "rest-secret"
private let unixTime: Int64 = 1_700_000_000
private let serverAddress = TransportAddress("203.0.113.1:3478")!
private let maxAllocations = 8
private let maxConnectionsPerAllocation = 3
private let responseCapacity = 548  // "548 bytes is always enough" (handleSTUN)

private struct Identity {
    var username: String
    var password: String
    var md5: IntegrityKey
    var sha256: IntegrityKey

    init(_ username: String, _ password: String) {
        self.username = username
        self.password = password
        md5 = try! IntegrityKey.longTerm(username: username, realm: realm, password: password, algorithm: .md5)
        sha256 = try! IntegrityKey.longTerm(username: username, realm: realm, password: password, algorithm: .sha256)
    }
}

private let identities: [Identity] = {
    let rest = "\(unixTime + 86_400):carol"
    let expired = "\(unixTime - 10):dave"
    return [
        Identity("alice", "secret"),
        Identity("bob", "hunter2"),
        Identity(rest, RESTCredentials.password(secret: restSecret, username: rest)),
        Identity(expired, RESTCredentials.password(secret: restSecret, username: expired)),
        Identity("alice", "wrong-password"),
        Identity("mallory", "secret"),
    ]
}()

private let clientTuples: [FiveTuple] = [
    FiveTuple(client: TransportAddress("198.51.100.7:40000")!, server: serverAddress),
    FiveTuple(client: TransportAddress("198.51.100.7:40001")!, server: serverAddress),
    FiveTuple(client: TransportAddress("198.51.100.8:40000")!, server: serverAddress, transport: .tcp),
    FiveTuple(client: TransportAddress("[2001:db8::7]:40000")!, server: serverAddress),
    FiveTuple(client: TransportAddress("198.51.100.7:40000")!, server: serverAddress, transport: .tcp),
    FiveTuple(client: TransportAddress("192.0.2.5:1")!, server: TransportAddress("[2001:db8::1]:3478")!),
] + (0..<6).map { FiveTuple(client: TransportAddress(ip: IPAddress("192.0.2.9")!, port: 1000 + UInt16($0)), server: serverAddress) }
    // New connections from the TCP clients' hosts: where ConnectionBind comes from.
    + [
        FiveTuple(client: TransportAddress("198.51.100.8:40001")!, server: serverAddress, transport: .tcp),
        FiveTuple(client: TransportAddress("198.51.100.7:40002")!, server: serverAddress, transport: .tls),
    ]

private let peerPool: [TransportAddress] = [
    TransportAddress("8.8.8.8:1000")!,
    TransportAddress("8.8.8.8:1001")!,
    TransportAddress("1.1.1.1:53")!,
    TransportAddress("[2001:4860::1]:1")!,
    TransportAddress("127.0.0.1:9")!,
    TransportAddress("10.0.0.1:1")!,
    TransportAddress("203.0.113.1:3478")!,
]

private let lifetimes: [UInt32] = [0, 1, 59, 600, 601, 3600, 3601, 0xFFFF_FFFF]

/// Appends an attribute whose value is an array (Array.withUnsafeBytes is
/// untyped-rethrows, so the typed error goes through a Result).
private func appendBytes(_ e: inout STUNEncoder, _ type: STUNAttributeType, _ value: [UInt8]) throws(STUNError) {
    let result: Result<Void, STUNError> = value.withUnsafeBytes { b in
        do throws(STUNError) {
            try e.append(type, bytes: b)
            return .success(())
        } catch {
            return .failure(error)
        }
    }
    try result.get()
}

/// `precondition` that names the invariant in -O builds too (a fatalError message is kept).
@inline(__always)
private func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = "invariant") {
    if !condition() { fatalError("invariant violated: \(message())") }
}

/// Method, class, error code and transaction ID of a STUN message, for reports.
private func describe(_ bytes: [UInt8]) -> String {
    bytes.withUnsafeBytes { raw in
        guard !bytes.isEmpty else { return "nothing" }
        guard let m = try? STUNMessage(parsing: raw) else { return "unparsable(\(bytes.count) bytes)" }
        return "method 0x\(String(m.method.rawValue, radix: 16)) class \(m.messageClass) error \(m.errorCode?.code ?? 0) tx \(m.transactionID.high):\(m.transactionID.low) len \(bytes.count)"
    }
}

// MARK: - Input cursor

private struct Cursor {
    let bytes: UnsafeRawBufferPointer
    var at = 0
    var isEmpty: Bool { at >= bytes.count }

    mutating func u8() -> UInt8 {
        guard at < bytes.count else { return 0 }
        defer { at += 1 }
        return bytes[at]
    }
    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }
    mutating func u64() -> UInt64 { UInt64(u32()) << 32 | UInt64(u32()) }
    mutating func take(_ n: Int) -> [UInt8] { (0..<n).map { _ in u8() } }
}

// MARK: - Fake relay provider

/// Hands out relay sockets from a small port pool and remembers which are
/// open, so leaks and double closes show.
private struct FuzzRelays: RelayPortProvider {
    var freeV4 = 10
    var freeV6 = 3
    var nextHandle: UInt64 = 1
    var open: [UInt64: RelayEndpoint] = [:]
    var reservations: [UInt64: UInt16] = [:]
    var doubleClose = false

    mutating func openRelay(for id: AllocationID, family: IPAddress.Family, evenPort: Bool, reserveNext: Bool)
        -> RelayEndpoint?
    {
        if family == .v4 {
            guard freeV4 > (reserveNext ? 1 : 0) else { return nil }
            freeV4 -= 1
        } else {
            guard freeV6 > 0 else { return nil }
            freeV6 -= 1
        }
        var port = UInt16(truncatingIfNeeded: 50000 &+ nextHandle &* 2)
        if evenPort { port &= ~1 }
        var token: UInt64 = 0
        if reserveNext && family == .v4 {
            freeV4 -= 1
            token = 0xABCD_0000_0000 | nextHandle
            reservations[token] = port &+ 1
        }
        let ip = family == .v4 ? IPAddress("203.0.113.1")! : IPAddress("2001:db8::1")!
        let e = RelayEndpoint(address: TransportAddress(ip: ip, port: port), handle: nextHandle, reservationToken: token)
        nextHandle += 1
        open[e.handle] = e
        return e
    }

    mutating func openTCPRelay(for id: AllocationID, family: IPAddress.Family) -> RelayEndpoint? {
        openRelay(for: id, family: family, evenPort: false, reserveNext: false)
    }

    mutating func openReservedRelay(for id: AllocationID, token: UInt64) -> RelayEndpoint? {
        guard let port = reservations.removeValue(forKey: token) else { return nil }
        let e = RelayEndpoint(address: TransportAddress(ip: IPAddress("203.0.113.1")!, port: port), handle: nextHandle)
        nextHandle += 1
        open[e.handle] = e
        return e
    }

    mutating func closeRelay(_ endpoint: RelayEndpoint) {
        guard open.removeValue(forKey: endpoint.handle) != nil else {
            doubleClose = true
            return
        }
        if endpoint.address.ip.family == .v4 { freeV4 += 1 } else { freeV6 += 1 }
    }

    /// The provider's ~30 s hold on reserved ports ran out.
    mutating func dropReservations() {
        freeV4 += reservations.count
        reservations.removeAll()
    }
}

// MARK: - One run

private struct ClientState {
    var nonce: [UInt8] = []
    var passwordAlgorithms: [UInt8]?
    var lastRequest: [UInt8] = []
    var lastResponse: [UInt8] = []
    var lastSentAt = MonotonicTime(nanoseconds: 0)
    var requestsSinceLast = 0
    var deadIDs: [AllocationID] = []
    var seenTransactions: Set<TransactionID> = []
}

/// What the effects and engine calls say of one RFC 6062 connection.
private struct ConnectionModel {
    var allocation: AllocationID
    var peer: TransportAddress
    var state: ConnectionState
    var deadline: UInt32 = 0
}

private struct Run: ~Copyable {
    var server: TURNServer
    var relays = FuzzRelays()
    var now = MonotonicTime.seconds(100_000)
    let quotas = AllocationQuotas(perUser: 3)
    var clients = Array(repeating: ClientState(), count: clientTuples.count)
    /// Allocations the effects announced, with their relays.
    var live: [AllocationID: [RelayEndpoint]] = [:]
    var reservedAt: MonotonicTime?
    /// Live connections, and those whose allocation went (not yet collected).
    var connections: [UInt32: ConnectionModel] = [:]
    var closedConnections: [UInt32: AllocationID] = [:]
    /// IDs in the order they were issued: inputs pick by position, so a run
    /// does not depend on the random values.
    var issued: [UInt32] = []
    var nextTransaction: UInt64 = 1
    var requestCount = 0

    init() {
        var config = TURNConfiguration(
            credentials: CredentialStore(
                realm: realm, users: ["alice": "secret", "bob": "hunter2"],
                rest: RESTCredentials(secrets: [restSecret, "old-secret"])),
            peerPolicy: PeerPolicy(serverAddresses: [IPAddress("203.0.113.1")!, IPAddress("2001:db8::1")!]),
            nonces: NonceCodec(secret: Array(repeating: 7, count: 32), lifetime: 600))
        config.acceptUserHash = true
        config.tcpRelay = true
        config.limits = TableLimits(
            maxAllocations: maxAllocations, maxPermissionsPerAllocation: 4, maxChannelsPerAllocation: 4,
            maxConnectionsPerAllocation: maxConnectionsPerAllocation, maxConnections: 2 * maxConnectionsPerAllocation)
        server = TURNServer(configuration: config, quotas: quotas, now: now)
    }

    // MARK: Invariants

    func checkTables() {
        check(server.tables.count <= maxAllocations, "more allocations than the table limit")
        check(server.tables.count == live.count, "tables.count differs from the allocations announced")
        check(!relays.doubleClose, "a relay was closed twice or was never opened")
        var held = 0
        for (id, endpoints) in live {
            check(server.tables.isLive(id), "an announced allocation is not live")
            for e in endpoints { check(relays.open[e.handle] == e, "a live allocation's relay is closed") }
            held += endpoints.count
        }
        check(relays.open.count == held, "a relay socket is open that no allocation holds")
        check(
            server.connectionCount == connections.count + closedConnections.count,
            "the connection table holds other connections than the model")
        var perAllocation: [AllocationID: Int] = [:]
        for (cid, m) in connections {
            check(server.connection(cid) == ConnectionInfo(allocation: m.allocation, peer: m.peer, state: m.state), "connection \(cid) differs from the model")
            check(live[m.allocation] != nil, "a connection outlived its allocation")
            perAllocation[m.allocation, default: 0] += 1
        }
        check(perAllocation.values.allSatisfy { $0 <= maxConnectionsPerAllocation }, "an allocation holds too many connections")
        for cid in closedConnections.keys { check(server.connection(cid) == nil, "a closed connection is still visible") }
    }

    mutating func forget(_ removed: RemovedAllocation, closeRelays: Bool) {
        guard let endpoints = live.removeValue(forKey: removed.id) else {
            fatalError("removed an allocation that was never announced")
        }
        var fromRemoval: [RelayEndpoint] = []
        if let v4 = removed.relayV4 { fromRemoval.append(v4) }
        if let v6 = removed.relayV6 { fromRemoval.append(v6) }
        check(Set(fromRemoval) == Set(endpoints), "removed allocation names other relays than it was created with")
        if closeRelays { for e in endpoints { relays.closeRelay(e) } }
        for (cid, m) in connections where m.allocation == removed.id {
            connections[cid] = nil
            closedConnections[cid] = m.allocation
        }
        for k in clientTuples.indices where clientTuples[k] == removed.fiveTuple { clients[k].deadIDs.append(removed.id) }
    }

    mutating func collectExpired() {
        var guardCount = 0
        while let removed = server.nextExpired(now: now) {
            forget(removed, closeRelays: true)
            guardCount += 1
            check(guardCount <= maxAllocations, "nextExpired returned more allocations than exist")
        }
        while let (cid, allocation) = server.nextExpiredConnection(now: now) {
            if trace { print("engine: connection \(cid) of \(allocation) not bound in 30 s") }
            guard let m = connections.removeValue(forKey: cid) else { fatalError("expired an unknown connection") }
            check(m.allocation == allocation && m.state == .awaitingBind && m.deadline <= now.seconds, "expired a connection not past its bind deadline")
        }
        for m in connections.values { check(m.state != .awaitingBind || m.deadline > now.seconds, "a connection past its bind deadline was not reported") }
        if let at = reservedAt, now.nanoseconds >= at.nanoseconds &+ 30_000_000_000 {
            relays.dropReservations()
            reservedAt = nil
        }
        checkTables()
    }

    // MARK: Sending

    /// Sends `packet` from client `k` and checks the answer.
    @discardableResult
    mutating func send(_ packet: [UInt8], from k: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: responseCapacity)
        let tuple = clientTuples[k]
        let outcome = packet.withUnsafeBytes { pkt in
            out.withUnsafeMutableBytes { o in
                server.handleSTUN(pkt, from: tuple, now: now, unixTime: unixTime, response: o, relays: &relays)
            }
        }
        requestCount += 1
        for i in clients.indices { clients[i].requestsSinceLast += 1 }
        check(outcome.responseLength >= 0 && outcome.responseLength <= responseCapacity)
        let response = Array(out[0..<outcome.responseLength])
        var freshTransaction = false
        if packet.count >= 20 {
            let t = packet.withUnsafeBytes { TransactionID(loadingFrom: $0.baseAddress! + 8) }
            freshTransaction = clients[k].seenTransactions.insert(t).inserted
        }

        // The request as the server sees it (if it parses at all).
        let request: (STUNMethod, STUNClass, TransactionID)? = packet.withUnsafeBytes { pkt in
            guard let m = try? STUNMessage(parsing: pkt) else { return nil }
            return (m.method, m.messageClass, m.transactionID)
        }
        if !response.isEmpty {
            response.withUnsafeBytes { raw in
                guard let r = try? STUNMessage(parsing: raw) else { fatalError("response does not parse as STUN") }
                check(r.messageClass == .successResponse || r.messageClass == .errorResponse, "response is not a response")
                check(
                    packet.count >= 20 && r.transactionID == TransactionID(loadingFrom: packet.withUnsafeBytes { $0.baseAddress! + 8 }),
                    "response has another transaction ID than the request")
                if let (method, cls, _) = request {
                    check(cls == .request, "answered a non-request")
                    // A transaction ID the client reused for another request (the
                    // 0xF022 pool, a mutated or raw packet) may get the cached answer
                    // of the first: only a first use must match the method.
                    check(r.method == method || !freshTransaction, "response method \(r.method.rawValue) differs from the request method \(method.rawValue) (tx \(r.transactionID), error \(r.errorCode?.code ?? 0))")
                }
                // Learn the nonce (and offered algorithms) like a real client.
                if let n = r.nonceBytes, r.errorCode?.code == 401 || r.errorCode?.code == 438 {
                    clients[k].nonce = Array(n)
                    clients[k].passwordAlgorithms = r.first(.passwordAlgorithms).map { Array($0.value) }
                }
            }
        }

        if trace { print("client \(k): \(describe(packet)) -> \(describe(response)) \(outcome.effect)\(outcome.tcpRelay.map { " \($0)" } ?? "") [\(server.tables.count) allocations]") }
        switch outcome.effect {
        case .allocationCreated(let id, let v4, let v6):
            check(live[id] == nil, "allocationCreated for an id already live")
            check(v4 != nil || v6 != nil, "allocation without a relay")
            check(server.tables.allocation(for: tuple) == id, "new allocation not found under its 5-tuple")
            var endpoints: [RelayEndpoint] = []
            for e in [v4, v6] {
                guard let e else { continue }
                endpoints.append(e)
                if e.reservationToken != 0 { reservedAt = now }
            }
            live[id] = endpoints
        case .allocationDeleted(let removed):
            // The relays were already closed through the provider.
            forget(removed, closeRelays: false)
        case .allocationMoved(let id, let from):
            // RFC 8016 (only with mobility on): re-keyed, relays unchanged.
            check(live[id] != nil, "moved an allocation not live")
            check(server.tables.allocation(for: tuple) == id, "moved allocation not found under its new 5-tuple")
            check(from != tuple && server.tables.allocation(for: from) == nil, "the old 5-tuple still finds an allocation")
        case .forwardMove(let worker):
            // The fuzzed server is the only worker (index 0 of 1): a ticket
            // naming another worker fails to open (400) before this.
            check(false, "forwardMove to worker \(worker) from the only worker")
        case .sendToPeer(let id, _, let payload, _):
            check(server.tables.isLive(id), "sendToPeer from a dead allocation")
            check(payload.lowerBound >= 0 && payload.upperBound <= packet.count, "payload outside the packet")
        case .none, .dropped, .tcpRelay:
            break  // RFC 6062 effects are checked below
        }
        switch outcome.tcpRelay {
        case .connectToPeer(let id, let peer, let cid)?:
            check(response.isEmpty, "Connect answered before the connection was made")
            check(live[id] != nil && server.tables.relayTransport(of: id) == .tcp, "Connect on a dead or UDP allocation")
            check(server.tables.fiveTuple(of: id) == tuple, "Connect for another client's allocation")
            check(cid != 0 && connections[cid] == nil && closedConnections[cid] == nil, "a CONNECTION-ID issued twice")
            check(!connections.values.contains { $0.allocation == id && $0.peer == peer }, "a second connection to the same peer (446 missed)")
            connections[cid] = ConnectionModel(allocation: id, peer: peer, state: .connecting)
            issued.append(cid)
        case .bindConnection(let cid, let id, let peer)?:
            check(response.withUnsafeBytes { (try? STUNMessage(parsing: $0))?.messageClass == .successResponse }, "bound without a success response")
            check(tuple.transport == .tcp || tuple.transport == .tls, "ConnectionBind accepted over UDP")
            check(server.tables.allocation(for: tuple) == nil, "ConnectionBind accepted on a control connection")
            guard let m = connections[cid] else { fatalError("bound an unknown connection") }
            check(m.allocation == id && m.peer == peer, "bound the wrong connection")
            check(m.state == .awaitingBind && m.deadline > now.seconds, "bound a connection not awaiting its bind")
            connections[cid]?.state = .bound
        case nil:
            break
        }
        checkTables()
        return response
    }

    /// Builds a request for client `k` from the input.
    mutating func buildRequest(_ c: inout Cursor, client k: Int) -> [UInt8] {
        let m = c.u8()
        let flags = c.u8()
        let signing = c.u8()
        let txByte = c.u8()
        let method: STUNMethod
        var cls = STUNClass.request
        switch m % 8 {
        case 0: method = .allocate
        case 1: method = .refresh
        case 2: method = .createPermission
        case 3: method = .channelBind
        case 4: method = .binding
        case 5: method = .send; cls = .indication
        case 6:
            if flags & 0x40 != 0 {
                method = [STUNMethod.connect, .connectionBind][Int(m >> 3) & 1]
            } else {
                method = STUNMethod(rawValue: UInt16(m >> 3) | UInt16(flags & 0x30) << 4)
            }
        default:
            method = [STUNMethod.allocate, .refresh, .createPermission, .channelBind][Int(m >> 3) & 3]
            cls = [STUNClass.indication, .successResponse, .errorResponse, .request][Int(m >> 5) & 3]
        }
        let transactionID: TransactionID
        if txByte < 0x40 {
            transactionID = TransactionID(high: 0xF022, low: UInt64(txByte & 3))  // shared between clients and methods
        } else {
            nextTransaction += 1
            transactionID = TransactionID(high: 0x1234, low: nextTransaction)
        }
        let identity = identities[Int(signing & 7) % identities.count]
        let sign = signing & 8 == 0 && method != .send && method != .binding
        let sha256 = signing & 16 != 0
        let fingerprint = signing & 32 != 0
        let corruptNonce = signing & 64 != 0
        let userHash = signing & 128 != 0 && signing & 32 == 0

        var buf = [UInt8](repeating: 0, count: 1200)
        let nonce = clients[k].nonce
        let algorithms = clients[k].passwordAlgorithms
        let n = buf.withUnsafeMutableBytes { raw -> Int in
            do throws(STUNError) {
                var e = try STUNEncoder(into: raw, method: method, class: cls, transactionID: transactionID)
                try appendBody(&e, &c, method: method, flags: flags)
                if sign {
                    if userHash {
                        let h = CredentialStore.userHash(username: identity.username, realm: realm).withUnsafeBytes { Array($0) }
                        try appendBytes(&e, .userHash, h)
                    } else {
                        try e.append(.username, utf8: identity.username)
                    }
                    try e.append(.realm, utf8: realm)
                    var nb = nonce
                    if corruptNonce && !nb.isEmpty { nb[Int(c.u8()) % nb.count] ^= 1 }
                    try appendBytes(&e, .nonce, nb)
                    if sha256 {
                        let offered = algorithms ?? [0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
                        try appendBytes(&e, .passwordAlgorithms, offered)
                        try e.appendPasswordAlgorithm(.sha256)
                        try e.appendMessageIntegritySHA256(key: identity.sha256)
                    } else {
                        try e.appendMessageIntegrity(key: identity.md5)
                    }
                }
                if fingerprint { try e.appendFingerprint() }
                return e.count
            } catch {
                return 0
            }
        }
        return Array(buf[0..<n])
    }

    func peer(_ c: inout Cursor) -> TransportAddress {
        let b = c.u8()
        if Int(b) % 8 < peerPool.count { return peerPool[Int(b) % 8] }
        return TransportAddress(ip: IPAddress(v4: c.u32()), port: c.u16())
    }

    /// A connection ID the model knows (live or closed), or any number.
    func connectionID(_ c: inout Cursor) -> UInt32 {
        let b = c.u8()
        let known = issued.filter { connections[$0] != nil || closedConnections[$0] != nil }
        if b & 0x80 == 0 && !known.isEmpty { return known[Int(b) % known.count] }
        return b & 0x40 == 0 ? UInt32(b & 0x3F) : c.u32()
    }

    func channelNumber(_ c: inout Cursor) -> UInt16 {
        let b = c.u8()
        if b & 0x80 == 0 { return 0x4000 + UInt16(b & 7) }
        return UInt16(b & 0x7F) << 8 | UInt16(c.u8())
    }

    func appendBody(_ e: inout STUNEncoder, _ c: inout Cursor, method: STUNMethod, flags: UInt8) throws(STUNError) {
        switch method {
        case .allocate:
            if flags & 1 != 0 {
                let t = c.u8()
                try e.appendRequestedTransport(t < 0xC0 ? 17 : t < 0xF0 ? 6 : t)
            }
            if flags & 2 != 0 { try e.appendLifetime(lifetimes[Int(c.u8()) % lifetimes.count]) }
            if flags & 4 != 0 { try e.appendEvenPort(reserveNext: c.u8() & 1 != 0) }
            if flags & 8 != 0 {
                let b = c.u8()
                let tokens = relays.reservations.keys.sorted()
                let token = b & 0x80 == 0 && !tokens.isEmpty ? tokens[Int(b) % tokens.count] : 0xABCD_0000_0000 | UInt64(b)
                try e.append(.reservationToken, uint64: token)
            }
            if flags & 16 != 0 { try e.appendAddressFamily(.requestedAddressFamily, family: c.u8() % 4) }
            if flags & 32 != 0 { try e.appendAddressFamily(.additionalAddressFamily, family: c.u8() % 4) }
            if flags & 64 != 0 { try e.appendDontFragment() }
        case .refresh:
            if flags & 2 != 0 { try e.appendLifetime(lifetimes[Int(c.u8()) % lifetimes.count]) }
            if flags & 16 != 0 { try e.appendAddressFamily(.requestedAddressFamily, family: c.u8() % 4) }
        case .createPermission:
            for _ in 0..<Int(flags & 3) { try e.append(.xorPeerAddress, xorAddress: peer(&c)) }
        case .channelBind:
            if flags & 1 != 0 { try e.appendChannelNumber(channelNumber(&c)) }
            if flags & 2 != 0 { try e.append(.xorPeerAddress, xorAddress: peer(&c)) }
            if flags & 4 != 0 { try e.append(.xorPeerAddress, xorAddress: peer(&c)) }
        case .connect:
            if flags & 2 != 0 { try e.append(.xorPeerAddress, xorAddress: peer(&c)) }
        case .connectionBind:
            if flags & 1 != 0 { try e.appendConnectionID(connectionID(&c)) }
        case .send:
            if flags & 2 != 0 { try e.append(.xorPeerAddress, xorAddress: peer(&c)) }
            if flags & 1 != 0 {
                let payload = c.take(Int(c.u8() % 32))
                try appendBytes(&e, .data, payload)
            }
            if flags & 4 != 0 { try e.appendDontFragment() }
        default:
            break
        }
        if flags & 128 != 0 {
            // One extra attribute of any type (unknown comprehension-required ones get 420).
            let type = STUNAttributeType(c.u16())
            let value = c.take(Int(c.u8() % 24))
            try appendBytes(&e, type, value)
        }
    }

    // MARK: Opcodes

    mutating func step(_ c: inout Cursor) {
        let op = c.u8()
        let k = Int(c.u8()) % clientTuples.count
        switch op % 8 {
        case 0, 1:
            let packet = buildRequest(&c, client: k)
            guard !packet.isEmpty else { return }
            clients[k].lastRequest = packet
            clients[k].lastResponse = send(packet, from: k)
            noteSent(k)
        case 2:
            let b = c.u8()
            let seconds = b & 0x80 == 0 ? UInt64(b) : UInt64(b & 0x7F) * 60
            now = now.adding(seconds: seconds)
            collectExpired()
        case 3:
            let b = c.u8()
            var packet: [UInt8]
            if b & 1 == 0 && !clients[k].lastRequest.isEmpty {
                packet = clients[k].lastRequest
                let at = Int(c.u16()) % packet.count
                packet[at] ^= max(1, c.u8())
            } else {
                packet = c.take(Int(b >> 1))
            }
            send(packet, from: k)
        case 4 where op & 8 != 0:
            tcpEngineCall(&c, client: k)
        case 4:
            let number = channelNumber(&c)
            if let (id, peer) = server.routeChannelData(channel: number, from: clientTuples[k], now: now) {
                check(server.tables.isLive(id) && live[id] != nil, "ChannelData routed to a dead allocation")
                check(server.tables.fiveTuple(of: id) == clientTuples[k], "ChannelData routed to another client's allocation")
                check(server.tables.isPermitted(peer.ip, in: id, now: now), "ChannelData routed to a peer without permission")
            }
        case 5:
            let b = c.u8()
            let id: AllocationID?
            if b & 1 == 0 {
                id = server.allocation(for: clientTuples[k])
            } else {
                id = clients[k].deadIDs.isEmpty ? nil : clients[k].deadIDs[Int(b >> 1) % clients[k].deadIDs.count]
            }
            guard let id else { return }
            let p = peer(&c)
            switch server.routePeerData(to: id, from: p, now: now) {
            case .drop:
                break
            case .dataIndication(let client):
                check(live[id] != nil && client == clientTuples[k], "peer data routed through a dead allocation")
            case .channel(let number, let client):
                check(live[id] != nil && client == clientTuples[k], "peer data routed through a dead allocation")
                guard let (back, backPeer) = server.routeChannelData(channel: number, from: client, now: now) else {
                    fatalError("channel chosen for peer data, but ChannelData on it is dropped")
                }
                check(back == id && backPeer == p, "channel routes differ between directions")
            }
        case 6:
            guard let id = server.allocation(for: clientTuples[k]) else {
                for dead in clients[k].deadIDs { check(server.removeAllocation(dead) == nil, "removed a dead allocation") }
                return
            }
            guard let removed = server.removeAllocation(id) else { fatalError("could not remove a live allocation") }
            check(removed.id == id)
            forget(removed, closeRelays: true)
            checkTables()
        default:
            let packet = clients[k].lastRequest
            guard !packet.isEmpty else { return }
            let before = clients[k].lastResponse
            // ResponseCache keeps Allocate and Refresh answers (4-way sets keyed by
            // transaction ID): with fuzz-chosen IDs, colliding packets in between
            // may evict an entry, so only back-to-back retransmissions count.
            let sameInstant = clients[k].lastSentAt == now && clients[k].requestsSinceLast == 0
            let type = packet.count >= 2 ? STUNMessageType(rawValue: UInt16(packet[0]) << 8 | UInt16(packet[1])) : nil
            let cachedMethod =
                type?.messageClass == .request && (type?.method == .allocate || type?.method == .refresh)
            let again = send(packet, from: k)
            if sameInstant && cachedMethod && !before.isEmpty {
                check(again == before, "a retransmission at the same instant got a different answer: \(describe(before)) then \(describe(again)) to \(describe(packet))")
            }
            clients[k].lastResponse = again
            noteSent(k)
        }
    }

    /// What the engine does around RFC 6062 connections.
    mutating func tcpEngineCall(_ c: inout Cursor, client k: Int) {
        let sub = c.u8()
        var out = [UInt8](repeating: 0, count: responseCapacity)
        switch sub % 4 {
        case 0:
            let cid = connectionID(&c)
            let success = sub & 0x10 != 0
            let result = out.withUnsafeMutableBytes { server.connectCompleted(connectionID: cid, success: success, now: now, into: $0) }
            if trace { print("engine: connect \(cid) \(success ? "succeeded" : "failed") -> \(result.map { "\($0.responseLength) bytes" } ?? "nil")") }
            guard let m = connections[cid], m.state == .connecting else {
                check(result == nil, "answered a Connect that is not in progress")
                return
            }
            guard let (n, control) = result else { fatalError("no answer to a Connect in progress") }
            check(control == server.tables.fiveTuple(of: m.allocation), "Connect answer for another control connection")
            out.withUnsafeBytes { raw in
                guard let r = try? STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: raw[0..<n])) else {
                    fatalError("Connect answer does not parse")
                }
                check(r.method == .connect, "Connect answer of another method")
                if success {
                    check(r.messageClass == .successResponse && r.connectionID == cid, "Connect success without its CONNECTION-ID")
                } else {
                    check(r.messageClass == .errorResponse && r.errorCode?.code == 447, "failed Connect not answered 447")
                }
            }
            if success {
                connections[cid]?.state = .awaitingBind
                connections[cid]?.deadline = now.seconds &+ 30
            } else {
                connections[cid] = nil
            }
        case 1:
            let b = c.u8()
            let id: AllocationID?
            if b & 1 == 0 {
                id = server.allocation(for: clientTuples[k])
            } else {
                id = clients[k].deadIDs.isEmpty ? nil : clients[k].deadIDs[Int(b >> 1) % clients[k].deadIDs.count]
            }
            guard let id else { return }
            let p = peer(&c)
            let result = out.withUnsafeMutableBytes { server.peerConnectionArrived(allocation: id, peer: p, now: now, into: $0) }
            guard let (cid, n, control) = result else { return }
            check(live[id] != nil && server.tables.relayTransport(of: id) == .tcp, "peer connection accepted on a dead or UDP allocation")
            check(server.tables.isPermitted(p.ip, in: id, now: now), "peer connection accepted without a permission")
            check(control == clientTuples[k], "ConnectionAttempt for another control connection")
            check(cid != 0 && connections[cid] == nil && closedConnections[cid] == nil, "a CONNECTION-ID issued twice")
            out.withUnsafeBytes { raw in
                guard let r = try? STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: raw[0..<n])) else {
                    fatalError("ConnectionAttempt does not parse")
                }
                check(r.method == .connectionAttempt && r.messageClass == .indication, "not a ConnectionAttempt indication")
                check(r.connectionID == cid && r.xorPeerAddress == p, "ConnectionAttempt names another connection")
            }
            connections[cid] = ConnectionModel(allocation: id, peer: p, state: .awaitingBind, deadline: now.seconds &+ 30)
            issued.append(cid)
            if trace { print("engine: peer \(p) connected to \(id) -> connection \(cid)") }
        case 2:
            let cid = connectionID(&c)
            server.removeConnection(cid)
            if trace { print("engine: connection \(cid) closed") }
            connections[cid] = nil
            closedConnections[cid] = nil
        default:
            collectClosedConnections()
        }
        checkTables()
    }

    mutating func collectClosedConnections() {
        while let (cid, allocation) = server.nextClosedConnection() {
            if trace { print("engine: connection \(cid) of \(allocation) closed with its allocation") }
            guard let a = closedConnections.removeValue(forKey: cid) else { fatalError("reported a connection not closed") }
            check(a == allocation, "closed connection reported with another allocation")
        }
        check(closedConnections.isEmpty, "a closed connection was not reported")
    }

    mutating func noteSent(_ k: Int) {  // after send(), which counted this packet
        clients[k].lastSentAt = now
        clients[k].requestsSinceLast = 0
    }

    /// Everything must be gone once every lifetime has run out.
    mutating func finish() {
        now = now.adding(seconds: 10 * 86_400)
        collectExpired()
        check(server.tables.count == 0, "allocations left after every lifetime ran out")
        check(live.isEmpty && relays.open.isEmpty, "relays left open after every allocation expired")
        check(quotas.allocationCount == 0, "quota counter not back to 0 after every allocation expired")
        check(connections.isEmpty, "connections left after every allocation expired")
        collectClosedConnections()
        check(server.connectionCount == 0, "connection table not empty after every allocation expired")
        for id in identities { check(quotas.allocationCount(user: id.username) == 0, "per-user quota not given back") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func turnStateFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
    defer { copy.deallocate() }
    if size > 0 { copy.baseAddress!.copyMemory(from: data, byteCount: size) }
    var c = Cursor(bytes: UnsafeRawBufferPointer(copy))
    var run = Run()
    var steps = 0
    while !c.isEmpty && steps < 400 {
        run.step(&c)
        steps += 1
    }
    run.finish()
    return 0
}
