import STUN
import Testing

/// Reads everything a parsed message offers; returns a count so the work is
/// observable. Mirrors what the fuzz target does.
func exerciseAll(_ m: STUNMessage, key: IntegrityKey) -> Int {
    var n = 0
    for a in m.attributes {
        n += a.value.count
        #expect(a.offset + 4 + a.value.count <= m.bytes.count)
    }
    n += m.mappedAddress != nil ? 1 : 0
    n += m.xorMappedAddress != nil ? 1 : 0
    n += m.alternateServer != nil ? 1 : 0
    for _ in m.xorPeerAddresses { n += 1 }
    for _ in m.xorRelayedAddresses { n += 1 }
    n += m.usernameBytes?.count ?? 0
    n += (m.username?.utf8.count ?? 0) + (m.realm?.utf8.count ?? 0) + (m.nonce?.utf8.count ?? 0)
    n += m.userHash?.count ?? 0
    n += m.software?.utf8.count ?? 0
    n += m.errorCode.map { $0.code + $0.reason.utf8.count } ?? 0
    n += m.addressErrorCode.map { $0.code + Int($0.family) } ?? 0
    if let algorithms = m.passwordAlgorithms { for a in algorithms { n += Int(a.id.rawValue) } }
    n += m.passwordAlgorithm.map { Int($0.id.rawValue) } ?? 0
    if let unknown = m.unknownAttributes { for t in unknown { n += Int(t.rawValue & 1) } }
    n += Int(m.channelNumber ?? 0) + Int((m.lifetime ?? 0) & 1) + (m.data?.count ?? 0)
    n += Int(m.requestedAddressFamily ?? 0) + Int(m.additionalAddressFamily ?? 0) + Int(m.requestedTransport ?? 0)
    n += (m.evenPort == true ? 1 : 0) + (m.dontFragment ? 1 : 0) + Int((m.reservationToken ?? 0) & 1)
    n += Int(m.icmp?.type ?? 0) + Int((m.connectionID ?? 0) & 1) + Int((m.fingerprint ?? 0) & 1)
    n += m.unknownComprehensionRequired.count
    n += m.verifyMessageIntegrity(key: key) ? 1 : 0
    n += m.verifyMessageIntegritySHA256(key: key) ? 1 : 0
    n += m.verifyFingerprint() ? 1 : 0
    return n
}

/// What a random message was built from, to compare after parsing.
struct Spec {
    var type: STUNMessageType
    var tid: TransactionID
    var mapped, xorMapped, alternate: TransportAddress
    var peers: [TransportAddress]
    var relayed: [TransportAddress]
    var username, realm, nonce, software, data, reason: [UInt8]
    var userHash: [UInt8]
    var errorCode: Int
    var addressError: (UInt8, Int)
    var algorithms: [PasswordAlgorithmID]
    var unknown: [STUNAttributeType]
    var channel: UInt16
    var lifetime: UInt32
    var transport, family, additionalFamily: UInt8
    var evenPort: Bool
    var token: UInt64
    var icmp: ICMPValue
    var connectionID: UInt32
    var key: IntegrityKey
    var sha256Length: Int

    init(_ rng: inout SplitMix64) throws {
        func text(_ rng: inout SplitMix64, _ max: Int) -> [UInt8] {
            (0..<Int.random(in: 0...max, using: &rng)).map { _ in UInt8.random(in: 0x20...0x7E, using: &rng) }
        }
        type = STUNMessageType(rawValue: UInt16.random(in: 0...0x3FFF, using: &rng))
        tid = rng.transactionID()
        mapped = rng.address()
        xorMapped = rng.address()
        alternate = rng.address()
        peers = (0..<Int.random(in: 1...4, using: &rng)).map { _ in rng.address() }
        relayed = (0..<Int.random(in: 1...2, using: &rng)).map { _ in rng.address() }
        username = text(&rng, 513)
        realm = text(&rng, 763)
        nonce = text(&rng, 763)
        software = text(&rng, 100)
        reason = text(&rng, 40)
        data = rng.bytes(Int.random(in: 0...1500, using: &rng))
        userHash = rng.bytes(32)
        errorCode = Int.random(in: 300...699, using: &rng)
        addressError = (UInt8.random(in: 1...2, using: &rng), Int.random(in: 300...699, using: &rng))
        algorithms = (0..<Int.random(in: 1...3, using: &rng)).map { _ in PasswordAlgorithmID(rawValue: UInt16.random(in: 0...3, using: &rng)) }
        unknown = (0..<Int.random(in: 0...5, using: &rng)).map { _ in STUNAttributeType(UInt16.random(in: 0...0xFFFF, using: &rng)) }
        channel = UInt16.random(in: 0x4000...0x4FFF, using: &rng)
        lifetime = UInt32.random(in: 0...UInt32.max, using: &rng)
        transport = UInt8.random(in: 0...255, using: &rng)
        family = UInt8.random(in: 0...255, using: &rng)
        additionalFamily = UInt8.random(in: 0...255, using: &rng)
        evenPort = Bool.random(using: &rng)
        token = rng.next()
        icmp = ICMPValue(type: UInt8.random(in: 0...255, using: &rng), code: UInt8.random(in: 0...255, using: &rng), data: UInt32.random(in: 0...UInt32.max, using: &rng))
        connectionID = UInt32.random(in: 0...UInt32.max, using: &rng)
        key = try rng.bytes(Int.random(in: 0...64, using: &rng)).withUnsafeBytes { try IntegrityKey(bytes: $0) }
        sha256Length = [16, 20, 24, 28, 32].randomElement(using: &rng)!
    }

    func encode(order: [Int]) throws -> [UInt8] {
        try STUNTests.encode(type, tid, capacity: 8192) { e in
            for step in order {
                switch step {
                case 0: try e.append(.mappedAddress, address: mapped)
                case 1: try e.append(.xorMappedAddress, xorAddress: xorMapped)
                case 2: try e.append(.alternateServer, address: alternate)
                case 3: for p in peers { try e.append(.xorPeerAddress, xorAddress: p) }
                case 4: for r in relayed { try e.append(.xorRelayedAddress, xorAddress: r) }
                case 5: try username.withUnsafeBytes { try e.append(.username, bytes: $0) }
                case 6: try realm.withUnsafeBytes { try e.append(.realm, bytes: $0) }
                case 7: try nonce.withUnsafeBytes { try e.append(.nonce, bytes: $0) }
                case 8: try software.withUnsafeBytes { try e.append(.software, bytes: $0) }
                case 9: try data.withUnsafeBytes { try e.append(.data, bytes: $0) }
                case 10: try userHash.withUnsafeBytes { try e.append(.userHash, bytes: $0) }
                case 11: try reason.withUnsafeBytes { try e.appendErrorCode(errorCode, reason: $0) }
                case 12: try reason.withUnsafeBytes { try e.appendAddressErrorCode(family: addressError.0, code: addressError.1, reason: $0) }
                case 13: try e.appendPasswordAlgorithms(algorithms)
                case 14: try e.appendPasswordAlgorithm(algorithms[0])
                case 15:
                    var list = UnknownAttributeList()
                    for u in unknown { list.insert(u) }
                    try e.appendUnknownAttributes(list)
                case 16: try e.appendChannelNumber(channel)
                case 17: try e.appendLifetime(lifetime)
                case 18: try e.appendRequestedTransport(transport)
                case 19: try e.appendAddressFamily(.requestedAddressFamily, family: family)
                case 20: try e.appendAddressFamily(.additionalAddressFamily, family: additionalFamily)
                case 21: try e.appendEvenPort(reserveNext: evenPort)
                case 22: try e.appendDontFragment()
                case 23: try e.append(.reservationToken, uint64: token)
                case 24: try e.appendICMP(icmp)
                case 25: try e.appendConnectionID(connectionID)
                default: break
                }
            }
            try e.appendMessageIntegrity(key: key)
            try e.appendMessageIntegritySHA256(key: key, length: sha256Length)
            try e.appendFingerprint()
        }
    }

    func check(_ m: STUNMessage) {
        #expect(m.messageType == type)
        #expect(m.transactionID == tid)
        #expect(m.mappedAddress == mapped)
        #expect(m.xorMappedAddress == xorMapped)
        #expect(m.alternateServer == alternate)
        #expect(Array(m.xorPeerAddresses) == peers)
        #expect(m.xorPeerAddress == peers.first)
        #expect(Array(m.xorRelayedAddresses) == relayed)
        #expect(bytes(m.usernameBytes) == username)
        #expect(bytes(m.realmBytes) == realm)
        #expect(bytes(m.nonceBytes) == nonce)
        #expect(bytes(m.softwareBytes) == software)
        #expect(bytes(m.data) == data)
        #expect(bytes(m.userHash) == userHash)
        #expect(m.errorCode?.code == errorCode)
        #expect(bytes(m.errorCode?.reasonBytes) == reason)
        #expect(m.addressErrorCode?.family == addressError.0)
        #expect(m.addressErrorCode?.code == addressError.1)
        #expect(m.passwordAlgorithms.map { Array($0.map(\.id)) } == algorithms)
        #expect(m.passwordAlgorithm?.id == algorithms[0])
        var dedup: [STUNAttributeType] = []
        for u in unknown where !dedup.contains(u) { dedup.append(u) }
        #expect(m.unknownAttributes.map { Array($0) } == dedup)
        #expect(m.channelNumber == channel)
        #expect(m.lifetime == lifetime)
        #expect(m.requestedTransport == transport)
        #expect(m.requestedAddressFamily == family)
        #expect(m.additionalAddressFamily == additionalFamily)
        #expect(m.evenPort == evenPort)
        #expect(m.dontFragment)
        #expect(m.reservationToken == token)
        #expect(m.icmp == icmp)
        #expect(m.connectionID == connectionID)
        #expect(m.verifyMessageIntegrity(key: key))
        #expect(m.verifyMessageIntegritySHA256(key: key))
        #expect(m.messageIntegritySHA256?.count == sha256Length)
        #expect(m.verifyFingerprint())
    }
}

@Suite("Properties")
struct PropertyTests {
    @Test("encode → parse round trip of every attribute, random values and order", arguments: 0..<40)
    func roundTrip(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let spec = try Spec(&rng)
        let order = Array(0...25).shuffled(using: &rng)
        let wire = try spec.encode(order: order)
        #expect(wire.count % 4 == 0)
        try withMessage(wire) { m in
            spec.check(m)
            #expect(exerciseAll(m, key: spec.key) > 0)
        }
    }

    @Test("random mutations never crash: each input parses or throws a STUNError", arguments: 0..<8)
    func mutations(seed: UInt64) throws {
        var rng = SplitMix64(seed: 1000 + seed)
        var seeds = [RFC5769.request, RFC5769.ipv4Response, RFC5769.ipv6Response, RFC5769.longTermRequest]
        for _ in 0..<4 {
            let spec = try Spec(&rng)
            seeds.append(try spec.encode(order: Array(0...25).shuffled(using: &rng).prefix(Int.random(in: 0...26, using: &rng)).map { $0 }))
        }
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        var parsed = 0
        var rejected = 0
        for i in 0..<1500 {
            var b = seeds[i % seeds.count]
            switch Int.random(in: 0..<5, using: &rng) {
            case 0:  // bit flips
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let at = Int.random(in: 0..<b.count, using: &rng)
                    b[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                }
            case 1:  // truncation
                b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng)))
            case 2:  // header length edit
                let l = UInt16.random(in: 0...UInt16.max, using: &rng)
                b[2] = UInt8(l >> 8)
                b[3] = UInt8(l & 0xFF)
            case 3:  // an attribute length edit at a 4-aligned offset in the body
                if b.count > 24 {
                    let at = 20 + 4 * Int.random(in: 0..<((b.count - 20) / 4), using: &rng)
                    b[at + 2] = UInt8.random(in: 0...255, using: &rng)
                    b[at + 3] = UInt8.random(in: 0...255, using: &rng)
                }
            default:  // random bytes appended after a valid header, length patched to match
                b = Array(b.prefix(20)) + rng.bytes(4 * Int.random(in: 0...16, using: &rng))
                b[2] = UInt8((b.count - 20) >> 8)
                b[3] = UInt8((b.count - 20) & 0xFF)
            }
            b.withUnsafeBytes { raw in
                do throws(STUNError) {
                    let m = try STUNMessage(parsing: raw)
                    #expect(m.bytes.count <= raw.count)
                    _ = exerciseAll(m, key: key)
                    _ = try? SendIndication(m)
                    parsed += 1
                } catch {
                    rejected += 1
                }
                _ = try? ChannelData(parsing: raw)
                _ = PacketKind(classifying: raw)
            }
        }
        #expect(parsed + rejected == 1500)
        #expect(rejected > 0)
    }
}
