import Testing

@testable import Relay

/// How ciphertext from OpenSSL's write BIO is cut into datagrams.
@Suite("DTLS records into datagrams")
struct DTLSRecordTests {
    /// Records with `lengths` bytes of body each (13-byte headers), concatenated.
    static func records(_ lengths: [Int]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, n) in lengths.enumerated() {
            out += [23, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, UInt8(i), UInt8(n >> 8), UInt8(n & 0xFF)]
            out += [UInt8](repeating: UInt8(i), count: n)
        }
        return out
    }

    static func split(_ bytes: [UInt8], mtu: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        bytes.withUnsafeBytes { DTLSPart.splitRecords($0, mtu: mtu) { out.append($0) } }
        return out
    }

    @Test func recordsArePackedUpToTheMTU() {
        // 513 + 513 = 1026 fit 1200; a third would not.
        #expect(Self.split(Self.records([500, 500, 500]), mtu: 1200) == [0..<1026, 1026..<1539])
        #expect(Self.split(Self.records([100]), mtu: 1200) == [0..<113])
    }

    @Test func aRecordBiggerThanTheMTUGoesAlone() {
        #expect(Self.split(Self.records([100, 2000, 100]), mtu: 1200) == [0..<113, 113..<2126, 2126..<2239])
    }

    @Test func aTruncatedTailIsLeftOut() {
        let whole = Self.records([100, 100])
        #expect(Self.split(whole + [23, 0xFE], mtu: 1200) == [0..<226])
        #expect(Self.split(Array(whole.dropLast(5)), mtu: 1200) == [0..<113])
        #expect(Self.split([], mtu: 1200).isEmpty)
    }
}
