import STUN
import Testing

/// RFC 8489 Appendix B.1: a request with USERHASH, NONCE, REALM and
/// MESSAGE-INTEGRITY-SHA256 under long-term credentials with the SHA-256
/// password algorithm. Username "マトリックス" (unchanged by OpaqueString),
/// password "The\u{AD}M\u{AA}tr\u{2168}" → "TheMatrIX" after OpaqueString.
///
/// The published vector is known to be broken (erratum 6268): its length
/// field (0x9c) counts the header, so the message claims 20 bytes more than
/// it has, and it lacks the PASSWORD-ALGORITHM that SHA-256 keys require.
/// The erratum's corrected message (length 0x90, PASSWORD-ALGORITHM SHA-256
/// added, new HMAC) is tested as well; what each test asserts is only what
/// verifies, and the comments say which parts do not.
@Suite("RFC 8489 Appendix B.1")
struct RFC8489VectorTests {
    static let nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
    static let userHash = hex(
        """
        4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f
        24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
        """)

    static let body = hex(
        """
        00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f 24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
        00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33
                    34 6f 4c 39 46 53 54 76 79 36 34 73 41 00 00 00
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        """)

    static let published =
        hex("00 01 00 9c 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e") + body
        + hex(
            """
            00 1c 00 20 e4 68 6c 8f 0e de b5 90 13 e0 70 90 01 0a 93 ef
                        cc bc cc 54 4c 0a 45 d9 f8 30 aa 6d 6f 73 5a 01
            """)

    static let corrected =
        hex("00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e") + body
        + hex(
            """
            00 1d 00 04 00 02 00 00
            00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24
                        13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65
            """)

    static func key() throws -> IntegrityKey {
        try IntegrityKey.longTerm(
            username: RFC5769.username, realm: "example.org", password: "TheMatrIX", algorithm: .sha256)
    }

    @Test("USERHASH is SHA-256(username \":\" realm)")
    func userHashValue() {
        let computed = UserHash(username: RFC5769.username, realm: "example.org")
        let published = Self.userHash.withUnsafeBytes { UserHash(bytes: $0) }
        #expect(computed == published)
    }

    @Test("published vector: its length field overruns the message")
    func publishedLength() {
        #expect(parseError(Self.published) == .lengthPastEnd)
    }

    @Test("published vector with its length fixed parses, but its HMAC does not verify")
    func publishedFixed() throws {
        var fixed = Self.published
        fixed[3] = 0x88  // 0x9c minus the 20-byte header, as the erratum says
        let key = try Self.key()
        try withMessage(fixed) { m in
            #expect(bytes(m.userHash) == Self.userHash)
            #expect(m.nonce == Self.nonce)
            #expect(m.realm == "example.org")
            #expect(m.messageIntegritySHA256?.count == 32)
            // Not a failure of ours: the erratum recomputed the HMAC because the
            // published one does not match this key; the corrected vector below does.
            #expect(!m.verifyMessageIntegritySHA256(key: key))
        }
    }

    @Test("erratum 6268 corrected vector: parse, MESSAGE-INTEGRITY-SHA256 verifies, re-encodes byte for byte")
    func corrected() throws {
        let key = try Self.key()
        try withMessage(Self.corrected) { m in
            #expect(m.transactionID == RFC5769.longTermTransactionID)
            #expect(bytes(m.userHash) == Self.userHash)
            #expect(m.username == nil)
            #expect(m.nonce == Self.nonce)
            #expect(m.realm == "example.org")
            #expect(m.passwordAlgorithm?.id == .sha256)
            #expect(m.passwordAlgorithm?.parameters.count == 0)
            #expect(m.verifyMessageIntegritySHA256(key: key))
            #expect(!m.verifyMessageIntegrity(key: key))
            let md5 = try IntegrityKey.longTerm(username: RFC5769.username, realm: "example.org", password: "TheMatrIX")
            #expect(!m.verifyMessageIntegritySHA256(key: md5))
        }
        let out = try encode(STUNMessageType(method: .binding, class: .request), RFC5769.longTermTransactionID) { e in
            try Self.userHash.withUnsafeBytes { raw in try e.append(.userHash, bytes: raw) }
            try e.append(.nonce, utf8: Self.nonce)
            try e.append(.realm, utf8: "example.org")
            try e.appendPasswordAlgorithm(.sha256)
            try e.appendMessageIntegritySHA256(key: key)
        }
        #expect(out == Self.corrected)
    }
}
