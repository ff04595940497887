import STUN
import Testing

@Suite("RFC 5769 test vectors")
struct RFC5769Tests {
    @Test("2.1 sample request: parse, integrity, fingerprint")
    func sampleRequest() throws {
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        let wrong = try IntegrityKey(shortTermPassword: "VOkJxbRl1RmTxUk/WvJxBu")
        try withMessage(RFC5769.request) { m in
            #expect(m.method == .binding)
            #expect(m.messageClass == .request)
            #expect(m.length == 0x58)
            #expect(m.transactionID == RFC5769.transactionID)
            #expect(m.software == "STUN test client")
            #expect(m.username == "evtj:h6vY")
            #expect(bytes(m.first(.priority)?.value) == [0x6E, 0x00, 0x01, 0xFF])
            #expect(bytes(m.first(.iceControlled)?.value) == hex("932ff9b151263b36"))
            #expect(m.fingerprint == 0xE57A_3BCF)
            #expect(m.verifyFingerprint())
            #expect(m.verifyMessageIntegrity(key: key))
            #expect(!m.verifyMessageIntegrity(key: wrong))
            // PRIORITY is comprehension-required and not a TURN attribute.
            let unknown = m.unknownComprehensionRequired
            #expect(unknown.count == 1 && unknown[0] == .priority)
            #expect(m.unknownComprehensionRequired { $0 == .priority || $0.isKnownToTURN }.isEmpty)
        }
    }

    @Test("2.1 sample request re-encodes byte for byte (0x20 padding)")
    func sampleRequestEncode() throws {
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        let out = try encode(STUNMessageType(method: .binding, class: .request), RFC5769.transactionID, padding: 0x20) {
            try $0.append(.software, utf8: "STUN test client")
            try $0.append(.priority, uint32: 0x6E00_01FF)
            try $0.append(.iceControlled, uint64: 0x932F_F9B1_5126_3B36)
            try $0.append(.username, utf8: "evtj:h6vY")
            try $0.appendMessageIntegrity(key: key)
            try $0.appendFingerprint()
        }
        #expect(out == RFC5769.request)
    }

    @Test("2.2 IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853")
    func ipv4Response() throws {
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        let expected = TransportAddress("192.0.2.1:32853")!
        try withMessage(RFC5769.ipv4Response) { m in
            #expect(m.messageType == STUNMessageType(method: .binding, class: .successResponse))
            #expect(m.software == "test vector")
            #expect(m.xorMappedAddress == expected)
            #expect(m.verifyMessageIntegrity(key: key))
            #expect(m.verifyFingerprint())
        }
        let out = try encode(STUNMessageType(method: .binding, class: .successResponse), RFC5769.transactionID, padding: 0x20) {
            try $0.append(.software, utf8: "test vector")
            try $0.append(.xorMappedAddress, xorAddress: expected)
            try $0.appendMessageIntegrity(key: key)
            try $0.appendFingerprint()
        }
        #expect(out == RFC5769.ipv4Response)
    }

    @Test("2.3 IPv6 response: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853")
    func ipv6Response() throws {
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        let expected = TransportAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853")!
        try withMessage(RFC5769.ipv6Response) { m in
            #expect(m.xorMappedAddress == expected)
            #expect(m.verifyMessageIntegrity(key: key))
            #expect(m.verifyFingerprint())
        }
        let out = try encode(STUNMessageType(method: .binding, class: .successResponse), RFC5769.transactionID, padding: 0x20) {
            try $0.append(.software, utf8: "test vector")
            try $0.append(.xorMappedAddress, xorAddress: expected)
            try $0.appendMessageIntegrity(key: key)
            try $0.appendFingerprint()
        }
        #expect(out == RFC5769.ipv6Response)
    }

    @Test("2.4 long-term credentials: MD5 key, parse, integrity, re-encode")
    func longTerm() throws {
        // "TheMatrIX" is the password after SASLprep/OpaqueString of "The\u{AD}M\u{AA}tr\u{2168}".
        let key = try IntegrityKey.longTerm(username: RFC5769.username, realm: RFC5769.realm, password: "TheMatrIX")
        try withMessage(RFC5769.longTermRequest) { m in
            #expect(m.transactionID == RFC5769.longTermTransactionID)
            #expect(m.username == RFC5769.username)
            #expect(m.usernameBytes?.count == 18)
            #expect(m.nonce == RFC5769.nonce)
            #expect(m.realm == RFC5769.realm)
            #expect(m.fingerprint == nil)
            #expect(!m.verifyFingerprint())
            #expect(m.verifyMessageIntegrity(key: key))
            // The key derived from the message's own bytes is the same key.
            let fromBytes = try IntegrityKey.longTerm(
                username: m.usernameBytes!, realm: m.realmBytes!,
                password: UnsafeRawBufferPointer(start: nil, count: 0))
            #expect(fromBytes != key)
            #expect(!m.verifyMessageIntegrity(key: fromBytes))
            #expect(!m.verifyMessageIntegritySHA256(key: key))
        }
        let out = try encode(STUNMessageType(method: .binding, class: .request), RFC5769.longTermTransactionID) {
            try $0.append(.username, utf8: RFC5769.username)
            try $0.append(.nonce, utf8: RFC5769.nonce)
            try $0.append(.realm, utf8: RFC5769.realm)
            try $0.appendMessageIntegrity(key: key)
        }
        #expect(out == RFC5769.longTermRequest)
    }

    @Test("CRC-32 check value")
    func crcCheckValue() {
        // The standard check: CRC-32 of "123456789" is 0xCBF43926.
        let value = Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }
        #expect(value == 0xCBF4_3926)
    }
}
