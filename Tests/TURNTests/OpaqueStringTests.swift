import STUN
import Testing

@testable import TURN

/// OpaqueString (RFC 8265 §4.2) and its use in long-term keys (RFC 8489 §9.2.2).
@Suite struct OpaqueStringTests {
    func scalars(_ s: String) -> [UInt32] { s.unicodeScalars.map(\.value) }

    /// RFC 8265 §4.3's OpaqueString examples.
    @Test func rfc8265Examples() throws {
        #expect(try OpaqueString.prepare("correct horse battery staple") == "correct horse battery staple")
        #expect(try OpaqueString.prepare("Correct Horse Battery Staple") == "Correct Horse Battery Staple")
        #expect(try OpaqueString.prepare("\u{3C0}\u{DF}\u{E5}") == "\u{3C0}\u{DF}\u{E5}")  // πßå
        #expect(try OpaqueString.prepare("Jack of \u{2666}s") == "Jack of \u{2666}s")  // a symbol
        // OGHAM SPACE MARK (a non-ASCII space) maps to U+0020.
        #expect(try OpaqueString.prepare("foo\u{1680}bar") == "foo bar")
        #expect(throws: OpaqueString.Failure.empty) { try OpaqueString.prepare("") }
        // A control character (TAB) is not allowed.
        #expect(throws: OpaqueString.Failure.disallowed("\u{09}")) { try OpaqueString.prepare("my cat is a \u{9}by") }
    }

    /// RFC 4013 §3's SASLprep examples, with what RFC 8265 changed: no
    /// mapping to nothing (SOFT HYPHEN is default-ignorable, so refused), NFC
    /// instead of NFKC (ª and Ⅸ stay), and no bidi rule.
    @Test func rfc4013Examples() throws {
        #expect(throws: OpaqueString.Failure.disallowed("\u{AD}")) { try OpaqueString.prepare("I\u{AD}X") }
        #expect(try OpaqueString.prepare("user") == "user")
        #expect(try OpaqueString.prepare("USER") == "USER")
        #expect(try OpaqueString.prepare("\u{AA}") == "\u{AA}")
        #expect(try OpaqueString.prepare("\u{2168}") == "\u{2168}")
        #expect(throws: OpaqueString.Failure.disallowed("\u{07}")) { try OpaqueString.prepare("\u{07}") }
        #expect(try OpaqueString.prepare("\u{627}\u{31}") == "\u{627}\u{31}")
    }

    @Test func normalisesToNFCAndRefusesTheDisallowed() throws {
        // e + COMBINING ACUTE → é; ANGSTROM SIGN → Å (a canonical singleton).
        #expect(scalars(try OpaqueString.prepare("caf\u{65}\u{301}")) == scalars("caf\u{E9}"))
        #expect(scalars(try OpaqueString.prepare("\u{212B}")) == [0xC5])
        // NO-BREAK SPACE and IDEOGRAPHIC SPACE are spaces: mapped.
        #expect(try OpaqueString.prepare("a\u{A0}b\u{3000}c") == "a b c")
        #expect(throws: OpaqueString.Failure.disallowed("\u{200D}")) { try OpaqueString.prepare("a\u{200D}b") }
        #expect(throws: OpaqueString.Failure.disallowed("\u{E000}")) { try OpaqueString.prepare("\u{E000}") }
        #expect(throws: OpaqueString.Failure.disallowed("\u{1100}")) { try OpaqueString.prepare("\u{1100}") }
        #expect(throws: OpaqueString.Failure.disallowed("\u{FFFF}")) { try OpaqueString.prepare("x\u{FFFF}") }
        #expect(throws: OpaqueString.Failure.disallowed("\u{0378}")) { try OpaqueString.prepare("\u{0378}") }  // unassigned
    }

    @Test func asciiCredentialsKeepTheirKeys() {
        let store = CredentialStore(realm: "example.org", users: ["alice": "s e c r e t~"])
        let raw = LongTermKey.derive(username: "alice", realm: "example.org", password: "s e c r e t~", algorithm: .md5)
        var got: LongTermKey?
        let outcome = Array("alice".utf8).withUnsafeBytes { name in
            store.authenticate(username: name, algorithm: .md5, unixTime: 0) { got = $0; return true }
        }
        #expect(outcome == .accepted(raw) && got == raw)
    }

    /// A user whose password (and name) need preparation authenticates with
    /// a client that prepared them, over the whole request path.
    @Test func aPasswordThatNeedsPreparationAuthenticates() {
        let decomposedName = "Ma\u{308}rta"  // Märta, a + COMBINING DIAERESIS
        let decomposedPassword = "A\u{30A}ngstro\u{308}m\u{2003}2"  // Ångström, EM SPACE, 2
        var h = Harness {
            $0.credentials = CredentialStore(realm: "example.org", users: [decomposedName: decomposedPassword])
        }
        var c = TestClient()
        c.username = "M\u{E4}rta"  // prepared: NFC
        c.password = "\u{C5}ngstr\u{F6}m 2"  // prepared: NFC, the space mapped
        #expect(h.allocate(&c).isSuccess)
        // The unprepared password gives another key: refused.
        var wrong = TestClient("198.51.100.9:1")
        wrong.username = "M\u{E4}rta"
        wrong.password = decomposedPassword
        #expect(h.allocate(&wrong).errorCode == 401)
    }
}
