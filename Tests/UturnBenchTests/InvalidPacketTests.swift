import Foundation
import STUN
import Testing

@testable import BenchCore

/// Each junk shape of `uturn-bench invalid` is what it claims to be, checked
/// with the project's own STUN parser over many seeded packets.
@Suite struct InvalidPacketTests {
    static let rounds = 300

    /// `rounds` packets of `kind` from a builder with a fixed seed, each as bytes.
    func packets(
        _ kind: InvalidKind, seed: UInt64 = 7, inWindow: Bool = true,
        prepare: (inout InvalidPacketBuilder) throws -> Void = { _ in }
    ) throws -> (InvalidPacketBuilder, [[UInt8]]) {
        var b = InvalidPacketBuilder(seed: seed, payload: 120, user: "bench")
        try prepare(&b)
        var out = [[UInt8]]()
        var buffer = [UInt8](repeating: 0, count: InvalidPacketBuilder.maximumSize)
        for _ in 0..<Self.rounds {
            let n = try buffer.withUnsafeMutableBytes { try b.write(kind, inWindow: inWindow, into: $0) }
            out.append(Array(buffer[0..<n]))
        }
        return (b, out)
    }

    func parseError(_ p: [UInt8]) -> STUNError? {
        p.withUnsafeBytes { raw in
            do throws(STUNError) {
                _ = try STUNMessage(parsing: raw)
                return nil
            } catch {
                return error
            }
        }
    }

    func be16(_ p: [UInt8], _ at: Int) -> Int { Int(p[at]) << 8 | Int(p[at + 1]) }
    func be32(_ p: [UInt8], _ at: Int) -> UInt32 {
        UInt32(p[at]) << 24 | UInt32(p[at + 1]) << 16 | UInt32(p[at + 2]) << 8 | UInt32(p[at + 3])
    }

    @Test func truncatedHeaderIsShorterThanAHeader() throws {
        let (_, ps) = try packets(.truncatedHeader)
        #expect(Set(ps.map(\.count)) == Set(1...19), "every length 1...19 shows up in \(Self.rounds) packets")
        for p in ps {
            #expect(parseError(p) == .truncatedHeader)
            // A prefix of a Binding request header: type 0x0001, then the cookie.
            let binding: [UInt8] = [0x00, 0x01]
            #expect(Array(p.prefix(2)) == Array(binding.prefix(p.count)))
            if p.count >= 8 { #expect(be32(p, 4) == STUNHeader.magicCookie) }
        }
    }

    @Test func badCookieIsABindingRequestWithTheWrongCookie() throws {
        let (b, ps) = try packets(.badCookie)
        for p in ps {
            #expect(p.count == STUNHeader.size)
            #expect(be16(p, 0) == 0x0001 && be16(p, 2) == 0)
            #expect(be32(p, 4) != STUNHeader.magicCookie)
            #expect(parseError(p) == .badMagicCookie)
            // With the cookie put right it is a valid, empty Binding request.
            var fixed = p
            fixed.replaceSubrange(4..<8, with: [0x21, 0x12, 0xA4, 0x42])
            #expect(parseError(fixed) == nil)
            #expect(p.withUnsafeBytes { b.decodeTag($0)?.kind } == .badCookie)
        }
        #expect(Set(ps.map { be32($0, 4) }).count > Self.rounds / 2, "cookies vary")
    }

    @Test func lengthPastEndClaimsMoreThanTheDatagramHolds() throws {
        let (_, ps) = try packets(.lengthPastEnd)
        for p in ps {
            let claimed = be16(p, 2)
            #expect(claimed > p.count - STUNHeader.size)
            #expect(claimed % 4 == 0)
            #expect(parseError(p) == .lengthPastEnd)
            // Only the length lies: corrected, the message parses.
            var fixed = p
            let real = p.count - STUNHeader.size
            fixed[2] = UInt8(real >> 8)
            fixed[3] = UInt8(real & 0xFF)
            #expect(parseError(fixed) == nil)
        }
    }

    @Test func attributePastEndOverrunsTheMessage() throws {
        let (_, ps) = try packets(.attributePastEnd)
        for p in ps {
            #expect(be16(p, 2) == p.count - STUNHeader.size, "the header length is right")
            #expect(be32(p, 4) == STUNHeader.magicCookie)
            #expect(be16(p, 22) > p.count - STUNHeader.size - 4, "the attribute claims more than is left")
            #expect(parseError(p) == .attributeOverrun(.software))
        }
    }

    @Test func randomBytesVaryInLengthAndContent() throws {
        let (_, ps) = try packets(.randomBytes)
        #expect(ps.allSatisfy { (1...1400).contains($0.count) })
        #expect(Set(ps.map(\.count)).count > Self.rounds / 2)
        #expect(Set(ps).count == ps.count, "no two packets alike")
        // The same seed gives the same bytes; another seed does not.
        #expect(try packets(.randomBytes).1 == ps)
        #expect(try packets(.randomBytes, seed: 8).1 != ps)
    }

    @Test func unauthenticatedAllocateIsWellFormedWithoutCredentials() throws {
        let (b, ps) = try packets(.unauthenticatedAllocate)
        var tids = Set<TransactionID>()
        for p in ps {
            try p.withUnsafeBytes { raw in
                let m = try STUNMessage(parsing: raw)
                #expect(m.method == .allocate && m.messageClass == .request)
                #expect(m.requestedTransport == 17)
                #expect(!m.contains(.messageIntegrity) && !m.contains(.username) && !m.contains(.nonce))
                #expect(m.verifyFingerprint())
                #expect(b.decodeTag(raw)?.kind == .unauthenticatedAllocate)
                tids.insert(m.transactionID)
            }
        }
        #expect(tids.count == ps.count, "a fresh transaction ID every time")
    }

    @Test func wrongIntegrityFailsOnlyTheIntegrityCheck() throws {
        let right = try IntegrityKey.longTerm(username: "bench", realm: "bench.local", password: "secret")
        let (_, ps) = try packets(.wrongIntegrity) { b in
            try b.setChallenge(realm: "bench.local", nonce: "nonce-123", password: "secret")
        }
        let wrong = try IntegrityKey.longTerm(username: "bench", realm: "bench.local", password: "secret-wrong")
        for p in ps {
            try p.withUnsafeBytes { raw in
                let m = try STUNMessage(parsing: raw)
                #expect(m.method == .allocate && m.messageClass == .request)
                #expect(m.username == "bench" && m.realm == "bench.local" && m.nonce == "nonce-123")
                #expect(m.verifyFingerprint(), "FINGERPRINT is right, so only integrity can refuse it")
                #expect(!m.verifyMessageIntegrity(key: right))
                #expect(m.verifyMessageIntegrity(key: wrong), "signed, with the wrong password")
            }
        }
    }

    @Test func wrongIntegrityNeedsAChallengeFirst() {
        var b = InvalidPacketBuilder(seed: 1, payload: 120, user: "bench")
        var buffer = [UInt8](repeating: 0, count: InvalidPacketBuilder.maximumSize)
        #expect(throws: TURNError.self) {
            _ = try buffer.withUnsafeMutableBytes { try b.write(.wrongIntegrity, inWindow: true, into: $0) }
        }
    }

    @Test(arguments: [InvalidKind.unboundChannel, .channelWithoutAllocation])
    func channelDataOnAnUnboundChannel(kind: InvalidKind) throws {
        let (b, ps) = try packets(kind)
        var channels = Set<UInt16>()
        for p in ps {
            #expect(p.count == ChannelData.headerSize + 120)
            try p.withUnsafeBytes { raw in
                let c = try ChannelData(parsing: raw)
                #expect(ChannelData.rfc8656Channels.contains(c.channelNumber))
                #expect(c.channelNumber != b.avoidChannel, "never the channel the session bound")
                #expect(c.payload.count == 120)
                channels.insert(c.channelNumber)
            }
        }
        #expect(channels.count > 1)
    }

    @Test func tagsNameKindWindowAndSequence() throws {
        var b = InvalidPacketBuilder(seed: 99, payload: 120, user: "bench")
        var buffer = [UInt8](repeating: 0, count: InvalidPacketBuilder.maximumSize)
        let stunShaped: [InvalidKind] = [.badCookie, .lengthPastEnd, .attributePastEnd, .unauthenticatedAllocate]
        for (i, kind) in (stunShaped + stunShaped).enumerated() {
            let inWindow = i >= stunShaped.count
            _ = try buffer.withUnsafeMutableBytes { try b.write(kind, inWindow: inWindow, into: $0) }
            let tag = buffer.withUnsafeBytes { b.decodeTag($0) }
            #expect(tag == .init(kind: kind, inWindow: inWindow, sequence: UInt64(i)))
        }
        // Another run's transaction IDs are not ours.
        let other = InvalidPacketBuilder(seed: 100, payload: 120, user: "bench")
        #expect(other.runTag != b.runTag)
        #expect(buffer.withUnsafeBytes { other.decodeTag($0) } == nil)
        #expect([UInt8](repeating: 0, count: 19).withUnsafeBytes { b.decodeTag($0) } == nil)
    }

    @Test func kindLists() {
        #expect(InvalidKind.list("all") == InvalidKind.allCases)
        #expect(InvalidKind.list("bad-cookie,random-bytes,bad-cookie") == [.badCookie, .randomBytes])
        #expect(InvalidKind.list("bad-cookie,nonsense") == nil)
        #expect(InvalidKind.list("") == nil)
        #expect(Set(InvalidKind.allCases.map(\.index)).count == InvalidKind.allCases.count)
    }
}
