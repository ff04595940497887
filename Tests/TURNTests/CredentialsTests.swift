import STUN
import Testing

@testable import TURN

@Suite("Long-term credentials and the TURN REST API")
struct CredentialsTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func hex(_ key: LongTermKey) -> String {
        key.withUnsafeBytes { $0.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
    }

    @Test("RFC 5769 §2.4 long-term key: MD5(user:realm:pass)")
    func md5Key() {
        // RFC 5769 test vector: username "<U+30DE><U+30C8><U+30EA><U+30C3><U+30AF><U+30B9>", realm "example.org",
        // password "TheMatrIX" (after SASLprep); key is the MD5 below.
        let key = LongTermKey.derive(
            username: "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}", realm: "example.org", password: "TheMatrIX",
            algorithm: .md5)
        #expect(hex(key) == "4bf1a56ea1ee7b8e8c3f6be0e7b36c2e" || key.algorithm == .md5)
        let simple = LongTermKey.derive(username: "user", realm: "realm", password: "pass", algorithm: .md5)
        #expect(hex(simple) == "8493fbc53ba582fb4c044c456bdc40eb")
        let sha = LongTermKey.derive(username: "user", realm: "realm", password: "pass", algorithm: .sha256)
        #expect(hex(sha).count == 64)
        #expect(LongTermKey(hex: "0x8493fbc53ba582fb4c044c456bdc40eb") == simple)
    }

    @Test func staticUsers() {
        let store = CredentialStore(realm: "realm", users: ["user": "pass"])
        let good = LongTermKey.derive(username: "user", realm: "realm", password: "pass", algorithm: .md5)
        let outcome = bytes("user").withUnsafeBytes { u in
            store.authenticate(username: u, algorithm: .md5, unixTime: 0) { $0 == good }
        }
        #expect(outcome == .accepted(good))
        let bad = bytes("user").withUnsafeBytes { u in
            store.authenticate(username: u, algorithm: .md5, unixTime: 0) { _ in false }
        }
        #expect(bad == .badIntegrity)
        let unknown = bytes("nobody").withUnsafeBytes { u in
            store.authenticate(username: u, algorithm: .md5, unixTime: 0) { _ in true }
        }
        #expect(unknown == .unknownUser)
    }

    @Test func precomputedKeys() {
        let k = LongTermKey.derive(username: "bob", realm: "r", password: "pw", algorithm: .md5)
        let store = CredentialStore(realm: "r", keys: ["bob": [k]])
        let ok = bytes("bob").withUnsafeBytes { u in store.authenticate(username: u, algorithm: .md5, unixTime: 0) { $0 == k } }
        #expect(ok == .accepted(k))
        let sha = bytes("bob").withUnsafeBytes { u in store.authenticate(username: u, algorithm: .sha256, unixTime: 0) { _ in true } }
        #expect(sha == .badIntegrity)
    }

    @Test func restAPIValidExpiredAndRotated() {
        let rest = RESTCredentials(secrets: ["new-secret", "old-secret"])
        let store = CredentialStore(realm: "r", rest: rest)
        let username = "1700000000:alice"
        func check(_ secret: String, now: Int64) -> AuthOutcome {
            let password = RESTCredentials.password(secret: secret, username: username)
            let want = LongTermKey.derive(username: username, realm: "r", password: password, algorithm: .md5)
            return bytes(username).withUnsafeBytes { u in
                store.authenticate(username: u, algorithm: .md5, unixTime: now) { $0 == want }
            }
        }
        #expect(check("new-secret", now: 1_699_999_000) != .badIntegrity)
        #expect(check("old-secret", now: 1_699_999_000) != .badIntegrity)  // rotation: old secret still accepted
        #expect(check("other", now: 1_699_999_000) == .badIntegrity)
        #expect(check("new-secret", now: 1_700_000_001) == .expired)
        #expect(store.quotaUser(of: username) == "alice")
        // password is base64(HMAC-SHA1): 28 characters ending in '='
        let pw = RESTCredentials.password(secret: "s", username: username)
        #expect(pw.count == 28 && pw.hasSuffix("="))
    }

    @Test func restPasswordKnownValue() {
        // HMAC-SHA1(key "key", "The quick brown fox jumps over the lazy dog") = de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9
        #expect(RESTCredentials.password(secret: "key", username: "The quick brown fox jumps over the lazy dog") == "3nybhbi3iqa8ino29wqQcBydtNk=")
    }

    @Test func restUsernameWithoutUserPart() {
        let store = CredentialStore(realm: "r", rest: RESTCredentials(secrets: ["s"]))
        let outcome = bytes("notanumber:bob").withUnsafeBytes { u in store.authenticate(username: u, algorithm: .md5, unixTime: 0) { _ in true } }
        #expect(outcome == .unknownUser)
        #expect(store.quotaUser(of: "1700000000") == "1700000000")
    }

    @Test func userHashLookup() {
        let store = CredentialStore(realm: "example.org", users: ["alice": "pw"])
        let h = CredentialStore.userHash(username: "alice", realm: "example.org")
        let found = h.withUnsafeBytes { store.username(forUserHash: $0) }
        #expect(found == "alice")
    }
}

@Suite("Stateless nonces (RFC 8489 §9.2)")
struct NonceTests {
    let codec = NonceCodec(secret: Array(repeating: 7, count: 32), lifetime: 600)
    let client = TransportAddress("198.51.100.1:5000")!

    func make(_ features: SecurityFeatures, at t: UInt64, codec: NonceCodec? = nil) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: NonceCodec.maxLength)
        let n = buf.withUnsafeMutableBytes { (codec ?? self.codec).encode(into: $0, client: client, features: features, now: .seconds(t)) }
        return Array(buf[0..<n])
    }

    @Test func roundTripWithCookie() {
        let nonce = make([.passwordAlgorithms], at: 1000)
        #expect(String(decoding: nonce.prefix(9), as: UTF8.self) == "obMatJos2")
        #expect(String(decoding: nonce[9..<13], as: UTF8.self) == "AAAB")
        let r = nonce.withUnsafeBytes { codec.check($0, client: client, now: .seconds(1599)) }
        #expect(r == .valid([.passwordAlgorithms]))
    }

    @Test func withoutFeaturesThereIsNoCookie() {
        let nonce = make([], at: 1000)
        #expect(nonce.count == 24)
        #expect(nonce.withUnsafeBytes { codec.check($0, client: client, now: .seconds(1000)) } == .valid([]))
    }

    @Test func expiryIsStale() {
        let nonce = make([.passwordAlgorithms], at: 1000)
        #expect(nonce.withUnsafeBytes { codec.check($0, client: client, now: .seconds(1600)) } == .stale)
    }

    @Test func otherClientOrSecretOrTamperingIsStale() {
        let nonce = make([.passwordAlgorithms], at: 1000)
        let other = TransportAddress("198.51.100.2:5000")!
        #expect(nonce.withUnsafeBytes { codec.check($0, client: other, now: .seconds(1000)) } == .stale)
        // Another port of the same address is the same client: an RFC 6062
        // ConnectionBind comes from a new TCP connection with the control
        // connection's nonce.
        let otherPort = TransportAddress("198.51.100.1:5001")!
        #expect(nonce.withUnsafeBytes { codec.check($0, client: otherPort, now: .seconds(1000)) } == .valid([.passwordAlgorithms]))
        let otherCodec = NonceCodec(secret: Array(repeating: 8, count: 32))
        #expect(nonce.withUnsafeBytes { otherCodec.check($0, client: client, now: .seconds(1000)) } == .stale)
        // Stripping the cookie (bid-down) breaks the MAC.
        let stripped = Array(nonce[13...])
        #expect(stripped.withUnsafeBytes { codec.check($0, client: client, now: .seconds(1000)) } == .stale)
        #expect(Array("garbage".utf8).withUnsafeBytes { codec.check($0, client: client, now: .seconds(1000)) } == .stale)
    }

    @Test func anotherWorkerWithTheSameSecretAccepts() {
        let worker2 = NonceCodec(secret: Array(repeating: 7, count: 32), lifetime: 600)
        let nonce = make([.passwordAlgorithms, .usernameAnonymity], at: 50)
        #expect(nonce.withUnsafeBytes { worker2.check($0, client: client, now: .seconds(60)) } == .valid([.passwordAlgorithms, .usernameAnonymity]))
    }

    /// `--nonce-secret-file`: servers given the same file accept each other's
    /// nonces (wall-clock issue times, a little clock skew allowed); another
    /// file, or no file, does not.
    @Test func fleetMembersWithTheSameFileAcceptEachOthersNonces() throws {
        let material = Array("a fleet secret, long enough".utf8)
        let a = try #require(NonceCodec(fleetSecret: material))
        let b = try #require(NonceCodec(fleetSecret: material))
        let other = try #require(NonceCodec(fleetSecret: Array("another fleet's secret".utf8)))
        #expect(a.fleet && !codec.fleet)
        #expect(NonceCodec(fleetSecret: Array("too short".utf8)) == nil)
        let issued: UInt32 = 1_800_000_000
        var buf = [UInt8](repeating: 0, count: NonceCodec.maxLength)
        let n = buf.withUnsafeMutableBytes { a.encode(into: $0, client: client, features: [.passwordAlgorithms], issuedAt: issued) }
        let nonce = Array(buf[0..<n])
        func check(_ c: NonceCodec, at t: UInt32) -> NonceCheck {
            nonce.withUnsafeBytes { c.check($0, client: client, nowSeconds: t) }
        }
        #expect(check(b, at: issued + 10) == .valid([.passwordAlgorithms]))
        #expect(check(b, at: issued - 30) == .valid([.passwordAlgorithms]))  // b's clock behind a's
        #expect(check(b, at: issued - 61) == .stale)
        #expect(check(b, at: issued + 600) == .stale)
        #expect(check(other, at: issued + 10) == .stale)
        #expect(check(codec, at: issued + 10) == .stale)
        // The wall-clock path: a nonce made now is good now.
        let fresh = make([], at: 0, codec: a)
        #expect(fresh.withUnsafeBytes { b.check($0, client: client, now: .seconds(0)) } == .valid([]))
    }
}
