import STUN
import Testing

/// A message from raw TLVs, with the header length computed unless overridden.
func rawMessage(type: UInt16 = 0x0001, _ attributes: [(UInt16, [UInt8])], length: Int? = nil) -> [UInt8] {
    var body: [UInt8] = []
    for (t, v) in attributes {
        body += [UInt8(t >> 8), UInt8(t & 0xFF), UInt8(v.count >> 8), UInt8(v.count & 0xFF)] + v
        body += [UInt8](repeating: 0, count: (4 - v.count % 4) % 4)
    }
    let l = length ?? body.count
    return [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(l >> 8), UInt8(l & 0xFF), 0x21, 0x12, 0xA4, 0x42]
        + [UInt8](repeating: 0xAB, count: 12) + body
}

@Suite("Malformed input")
struct MalformedInputTests {
    @Test("header errors")
    func header() {
        #expect(parseError([]) == .truncatedHeader)
        #expect(parseError(Array(RFC5769.request[0..<19])) == .truncatedHeader)
        var b = RFC5769.request
        b[0] |= 0x40
        #expect(parseError(b) == .notSTUN)
        b = RFC5769.request
        b[5] ^= 1
        #expect(parseError(b) == .badMagicCookie)
        #expect(parseError(rawMessage([], length: 2) + [0, 0]) == .lengthNotMultipleOfFour)
        #expect(parseError(Array(RFC5769.request.dropLast())) == .lengthPastEnd)
        #expect(parseError(rawMessage([], length: 4)) == .lengthPastEnd)
    }

    @Test("trailing bytes past the length are not part of the message")
    func trailing() throws {
        try withMessage(RFC5769.request + [1, 2, 3, 4, 5]) { m in
            #expect(m.bytes.count == RFC5769.request.count)
            #expect(m.verifyFingerprint())
        }
    }

    @Test("attribute overruns the message")
    func overrun() {
        // SOFTWARE claims 9 bytes (12 padded) but the header gives the body only 8.
        var b = rawMessage([(0x8022, [1, 2, 3, 4])])
        b[23] = 9
        #expect(parseError(b) == .attributeOverrun(.software))
        // Header length shorter than the attribute it cuts.
        #expect(parseError(rawMessage([(0x0006, [1, 2, 3, 4, 5, 6, 7, 8])], length: 8)) == .attributeOverrun(.username))
    }

    @Test("address family and length", arguments: [
        (STUNAttributeType.xorPeerAddress, [0, 3, 0, 1, 1, 2, 3, 4] as [UInt8], STUNError.badAddressFamily(.xorPeerAddress)),
        (.mappedAddress, [0, 0, 0, 1, 1, 2, 3, 4], .badAddressFamily(.mappedAddress)),
        (.xorRelayedAddress, [0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8], .invalidLength(.xorRelayedAddress)),
        (.xorMappedAddress, [0, 2, 0, 1, 1, 2, 3, 4], .invalidLength(.xorMappedAddress)),
        (.alternateServer, [0], .invalidLength(.alternateServer)),
    ])
    func addresses(type: STUNAttributeType, value: [UInt8], error: STUNError) {
        #expect(parseError(rawMessage([(type.rawValue, value)])) == error)
    }

    @Test("oversize values", arguments: [
        (STUNAttributeType.username, 513), (.realm, 763), (.nonce, 763), (.software, 763),
    ])
    func oversize(type: STUNAttributeType, limit: Int) {
        #expect(parseError(rawMessage([(type.rawValue, [UInt8](repeating: 0x61, count: limit))])) == nil)
        #expect(
            parseError(rawMessage([(type.rawValue, [UInt8](repeating: 0x61, count: limit + 1))]))
                == .valueTooLong(type))
    }

    @Test("fixed-length attributes with the wrong length", arguments: [
        (STUNAttributeType.lifetime, 3), (.channelNumber, 8), (.requestedTransport, 0), (.messageIntegrity, 16),
        (.fingerprint, 8), (.userHash, 31), (.evenPort, 4), (.dontFragment, 4), (.reservationToken, 4),
        (.messageIntegritySHA256, 12), (.messageIntegritySHA256, 18), (.messageIntegritySHA256, 36),
        (.icmp, 4), (.errorCode, 3), (.connectionID, 2), (.requestedAddressFamily, 1), (.unknownAttributes, 3),
    ])
    func wrongLength(type: STUNAttributeType, length: Int) {
        #expect(parseError(rawMessage([(type.rawValue, [UInt8](repeating: 0, count: length))])) == .invalidLength(type))
    }

    @Test("out-of-range values")
    func badValues() {
        #expect(parseError(rawMessage([(0x0009, [0, 0, 7, 0])])) == .invalidValue(.errorCode))
        #expect(parseError(rawMessage([(0x0009, [0, 0, 4, 100])])) == .invalidValue(.errorCode))
        #expect(parseError(rawMessage([(0x8001, [1, 0, 2, 0])])) == .invalidValue(.addressErrorCode))
        #expect(parseError(rawMessage([(0x8002, [0, 1, 0, 8, 0, 0])])) == .invalidValue(.passwordAlgorithms))
        #expect(parseError(rawMessage([(0x8002, [])])) == .invalidValue(.passwordAlgorithms))
        #expect(parseError(rawMessage([(0x001D, [0, 2])])) == .invalidValue(.passwordAlgorithm))
        #expect(parseError(rawMessage([(0x0009, [0, 0, 4, 1] + [UInt8](repeating: 0x41, count: 764))])) == .valueTooLong(.errorCode))
    }

    @Test("duplicates of security-relevant attributes are rejected", arguments: [
        (STUNAttributeType.username, [UInt8](repeating: 0x61, count: 4)), (.realm, [0x61]), (.nonce, [0x61]),
        (.lifetime, [0, 0, 0, 1]), (.channelNumber, [0x40, 0, 0, 0]), (.requestedTransport, [17, 0, 0, 0]),
        (.data, [1]), (.userHash, [UInt8](repeating: 1, count: 32)), (.connectionID, [0, 0, 0, 1]),
    ])
    func duplicates(type: STUNAttributeType, value: [UInt8]) {
        #expect(parseError(rawMessage([(type.rawValue, value), (type.rawValue, value)])) == .duplicateAttribute(type))
    }

    @Test("duplicates of informational attributes keep the first")
    func benignDuplicates() throws {
        try withMessage(rawMessage([(0x8022, Array("one".utf8)), (0x8022, Array("two".utf8))])) { m in
            #expect(m.software == "one")
        }
    }

    @Test("nothing may follow FINGERPRINT")
    func afterFingerprint() {
        #expect(parseError(rawMessage([(0x8028, [0, 0, 0, 0]), (0x8022, [0x61])])) == .attributeAfterFingerprint)
        #expect(parseError(rawMessage([(0x8028, [0, 0, 0, 0]), (0x8028, [0, 0, 0, 0])])) == .attributeAfterFingerprint)
    }

    @Test("attributes after MESSAGE-INTEGRITY are ignored, except MI-SHA256 and FINGERPRINT")
    func afterIntegrity() throws {
        let key = try IntegrityKey(shortTermPassword: "secret")
        let tid = TransactionID(high: 1, low: 1)
        var signed = try encode(STUNMessageType(method: .allocate, class: .request), tid) { e in
            try e.appendLifetime(600)
            try e.appendMessageIntegrity(key: key)
        }
        // Append DATA (valid) and a malformed LIFETIME (length 3): both ignored, not validated.
        signed += [0x00, 0x13, 0x00, 0x04, 1, 2, 3, 4, 0x00, 0x0D, 0x00, 0x03, 0, 0, 0, 0, 0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 9]
        signed[3] = UInt8(signed.count - 20)
        try withMessage(signed) { m in
            #expect(m.data == nil)
            #expect(m.lifetime == 600)
            #expect(m.verifyMessageIntegrity(key: key))
            #expect(!m.contains(.data))
            #expect(Array(m.attributes.map(\.type)) == [.lifetime, .messageIntegrity])
            #expect(m.unknownComprehensionRequired.isEmpty)
        }
        // MI-SHA256 and FINGERPRINT after MI still count; MI after MI-SHA256 does not.
        let both = try encode(STUNMessageType(method: .allocate, class: .request), tid) { e in
            try e.appendMessageIntegrity(key: key)
            try e.appendMessageIntegritySHA256(key: key, length: 16)
            try e.appendFingerprint()
        }
        try withMessage(both) { m in
            #expect(m.verifyMessageIntegrity(key: key))
            #expect(m.verifyMessageIntegritySHA256(key: key))
            #expect(m.messageIntegritySHA256?.count == 16)
            #expect(m.verifyFingerprint())
        }
        let reversed = try encode(STUNMessageType(method: .allocate, class: .request), tid) { e in
            try e.appendMessageIntegritySHA256(key: key)
            try e.appendMessageIntegrity(key: key)
        }
        try withMessage(reversed) { m in
            #expect(m.verifyMessageIntegritySHA256(key: key))
            #expect(m.messageIntegrity == nil)
        }
    }

    @Test("a tampered message fails integrity and fingerprint")
    func tampered() throws {
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        var b = RFC5769.request
        b[30] ^= 0x01  // inside SOFTWARE
        try withMessage(b) { m in
            #expect(!m.verifyMessageIntegrity(key: key))
            #expect(!m.verifyFingerprint())
        }
    }

    @Test("unknown comprehension-required attributes are reported once each, optional ones never")
    func unknown() throws {
        try withMessage(rawMessage([(0x7777, [1]), (0xC001, [1]), (0x7777, [2]), (0x0003, [])])) { m in
            let u = m.unknownComprehensionRequired
            #expect(u.count == 2)
            #expect(u[0] == STUNAttributeType(0x7777) && u[1] == STUNAttributeType(0x0003))
        }
    }
}

@Suite("Encoder limits")
struct EncoderLimitTests {
    @Test("overflow and bad arguments throw; the message stays intact")
    func overflow() throws {
        var small = [UInt8](repeating: 0, count: 19)
        small.withUnsafeMutableBytes { raw -> Void in
            #expect(throws: STUNError.bufferTooSmall) {
                try STUNEncoder(into: raw, method: .binding, class: .request, transactionID: .init(high: 0, low: 0))
            }
        }
        var buffer = [UInt8](repeating: 0, count: 32)
        try buffer.withUnsafeMutableBytes { raw in
            var e = try STUNEncoder(into: raw, method: .binding, class: .request, transactionID: .init(high: 0, low: 0))
            try e.appendLifetime(1)
            #expect(throws: STUNError.bufferTooSmall) { try e.appendLifetime(2) }
            #expect(e.count == 28)
            #expect(throws: STUNError.bufferTooSmall) { try e.appendFingerprint() }
            #expect(throws: STUNError.invalidArgument) { try e.appendErrorCode(200, reason: "OK") }
            #expect(throws: STUNError.invalidArgument) {
                try e.appendMessageIntegritySHA256(key: IntegrityKey(shortTermPassword: "k"), length: 15)
            }
            #expect(e.count == 28)
            let m = try STUNMessage(parsing: UnsafeRawBufferPointer(e.message))
            #expect(m.lifetime == 1)
        }
        #expect(throws: STUNError.keyTooLong) { try IntegrityKey(shortTermPassword: String(repeating: "x", count: 65)) }
        #expect(throws: STUNError.invalidArgument) {
            try IntegrityKey.longTerm(username: "u", realm: "r", password: "p", algorithm: .init(rawValue: 3))
        }
    }

    @Test("message type bits", arguments: [
        (STUNMethod.binding, STUNClass.request, UInt16(0x0001)), (.allocate, .successResponse, 0x0103),
        (.allocate, .errorResponse, 0x0113), (.send, .indication, 0x0016), (.data, .indication, 0x0017),
        (.channelBind, .request, 0x0009), (.refresh, .successResponse, 0x0104), (.createPermission, .errorResponse, 0x0118),
        (STUNMethod(rawValue: 0xFFF), .errorResponse, 0x3FFF), (.connectionAttempt, .indication, 0x001C),
        // RFC 6062 §6.1: Connect 0x000A, ConnectionBind 0x000B, ConnectionAttempt 0x000C.
        (.connect, .request, 0x000A), (.connect, .successResponse, 0x010A), (.connect, .errorResponse, 0x011A),
        (.connectionBind, .request, 0x000B), (.connectionBind, .successResponse, 0x010B),
    ])
    func messageType(method: STUNMethod, messageClass: STUNClass, raw: UInt16) {
        let t = STUNMessageType(method: method, class: messageClass)
        #expect(t.rawValue == raw)
        #expect(STUNMessageType(rawValue: raw) == t)
    }

    @Test("CONNECTION-ID (RFC 6062 §6.2.1): encoder and accessor, big-endian on the wire")
    func connectionID() throws {
        var buf = [UInt8](repeating: 0, count: 64)
        try buf.withUnsafeMutableBytes { raw in
            var e = try STUNEncoder(
                into: raw, method: .connectionAttempt, class: .indication, transactionID: TransactionID(high: 1, low: 2))
            try e.append(.xorPeerAddress, xorAddress: TransportAddress("192.0.2.1:4000")!)
            try e.appendConnectionID(0xDEAD_BEEF)
            #expect(Array(raw[32..<40]) == [0x00, 0x2A, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF])
            let m = try STUNMessage(parsing: UnsafeRawBufferPointer(e.message))
            #expect(m.method == .connectionAttempt && m.messageClass == .indication)
            #expect(m.connectionID == 0xDEAD_BEEF)
            #expect(m.xorPeerAddress == TransportAddress("192.0.2.1:4000"))
            #expect(STUNAttributeType.connectionID.isKnownToTURN && STUNAttributeType.connectionID.isComprehensionRequired)
        }
        let lifetimeOnly = rawMessage([(0x000D, [0, 0, 0, 1])])
        let parsed = lifetimeOnly.withUnsafeBytes { (try? STUNMessage(parsing: $0)).map { ($0.lifetime, $0.connectionID) } }
        #expect(parsed?.0 == 1 && parsed?.1 == nil)
    }
}
