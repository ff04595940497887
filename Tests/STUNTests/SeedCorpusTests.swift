#if canImport(Glibc)
import Glibc
#endif
import STUN
import Testing

/// The fuzz seed corpus doubles as an independent cross-check: its TURN
/// messages were written by Fuzz/make-seed-corpus.py with Python's hmac and
/// zlib, so they verify here only if our HMAC framing and CRC agree.
@Suite("Fuzz seed corpus")
struct SeedCorpusTests {
    static let directory: String = {
        // Resolve symlinks so the path is right wherever the tests are built from.
        var path = realpath(#filePath, nil).map { p in defer { free(p) }; return String(cString: p) } ?? #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }  // …/Tests/STUNTests/x.swift → root
        return path + "/Fuzz/corpus/stun/"
    }()

    static let names = [
        "rfc5769-request", "rfc5769-ipv4-response", "rfc5769-ipv6-response", "rfc5769-long-term",
        "rfc8489-b1-erratum", "allocate-request", "allocate-success-dual", "unauthorized-401",
        "create-permission", "channel-bind", "send-indication", "data-indication-v6", "connect-tcp",
        "channeldata-udp", "channeldata-tcp",
    ]

    static func load(_ name: String) -> [UInt8]? {
        guard let f = fopen(directory + name, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    @Test("every seed parses; generated ones verify integrity and fingerprint", arguments: names)
    func seed(name: String) throws {
        let data = try #require(Self.load(name))
        let key = try IntegrityKey(shortTermPassword: RFC5769.password)
        switch data.withUnsafeBytes({ PacketKind(classifying: $0) }) {
        case .channelData:
            try data.withUnsafeBytes { raw in
                let cd = try ChannelData(parsing: raw)
                #expect(Array(cd.payload) == Array("hello".utf8))
            }
        case .stun:
            try withMessage(data) { m in
                #expect(m.bytes.count == data.count)
                if m.contains(.messageIntegrity) && !name.hasPrefix("rfc5769-long") {
                    #expect(m.verifyMessageIntegrity(key: key))
                }
                if m.contains(.fingerprint) { #expect(m.verifyFingerprint()) }
                if name == "allocate-success-dual" { #expect(Array(m.xorRelayedAddresses).count == 2) }
                if name == "create-permission" { #expect(Array(m.xorPeerAddresses).count == 2) }
                if name == "unauthorized-401" {
                    #expect(m.errorCode?.code == 401 && m.errorCode?.reason == "Unauthorized")
                    #expect(m.addressErrorCode?.code == 440 && m.addressErrorCode?.family == 2)
                }
            }
        case .other:
            Issue.record("seed \(name) is neither STUN nor ChannelData")
        }
    }
}
