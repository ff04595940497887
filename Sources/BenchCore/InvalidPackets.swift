import STUN

/// The shapes of junk `uturn-bench invalid` sends: malformed datagrams and
/// well-formed requests that must not get past authentication. The raw value
/// is the name `--kinds` takes.
public enum InvalidKind: String, CaseIterable, Sendable, Codable {
    /// 1...19 bytes: a Binding request cut inside its 20-byte header.
    case truncatedHeader = "truncated-header"
    /// A 20-byte Binding request whose magic cookie is not 0x2112A442
    /// (an RFC 3489 server may answer it; an RFC 8489 one drops it).
    case badCookie = "bad-cookie"
    /// A Binding request whose header length counts bytes past the datagram's end.
    case lengthPastEnd = "length-past-end"
    /// A Binding request whose header length is right but whose one
    /// attribute's length runs past the end of the message.
    case attributePastEnd = "attribute-past-end"
    /// 1...1400 random bytes.
    case randomBytes = "random-bytes"
    /// A well-formed Allocate request with no credentials (expect 401).
    case unauthenticatedAllocate = "unauthenticated-allocate"
    /// An Allocate request with the right USERNAME, REALM and a fresh NONCE but
    /// a MESSAGE-INTEGRITY made with the wrong password, and a correct
    /// FINGERPRINT, so only the integrity check can refuse it (expect 401).
    case wrongIntegrity = "wrong-integrity"
    /// ChannelData from a 5-tuple that has an allocation, on a channel
    /// number it never bound.
    case unboundChannel = "unbound-channel"
    /// ChannelData from a 5-tuple with no allocation at all.
    case channelWithoutAllocation = "channel-no-allocation"

    /// Position in `allCases`; carried in the transaction ID.
    public var index: UInt8 { UInt8(Self.allCases.firstIndex(of: self)!) }

    /// The source 5-tuple needs an allocation first.
    public var needsAllocation: Bool { self == .unboundChannel }
    /// The builder needs REALM and NONCE from a 401 first.
    public var needsChallenge: Bool { self == .wrongIntegrity }

    /// Parses a comma-separated list (`all` for every kind).
    public static func list(_ text: String) -> [InvalidKind]? {
        if text == "all" { return allCases }
        var kinds = [InvalidKind]()
        for part in text.split(separator: ",") {
            guard let k = InvalidKind(rawValue: String(part)) else { return nil }
            if !kinds.contains(k) { kinds.append(k) }
        }
        return kinds.isEmpty ? nil : kinds
    }
}

/// SplitMix64: a small, fast, seedable generator, so a junk run can be
/// repeated exactly (`--seed`). Not for anything that needs secrecy.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Builds one junk datagram of a given kind into a caller's buffer.
///
/// Every STUN-shaped packet carries a transaction ID that names this run, the
/// kind, whether it was sent inside the measured window, and a sequence
/// number, so an answer can be counted against what provoked it
/// (`decodeTag`). Each packet gets a fresh transaction ID: a server's
/// retransmission cache must not answer for it.
public struct InvalidPacketBuilder {
    public var rng: SplitMix64
    /// 24 bits naming this run in every transaction ID.
    public let runTag: UInt32
    public private(set) var sequence: UInt64 = 0
    /// ChannelData payload size for the channel kinds.
    public var payload: Int
    /// The channel the session sending `unboundChannel` must avoid (none is
    /// bound there, but the number is the one a bound session would use).
    public var avoidChannel: UInt16 = 0x4000
    /// For `wrongIntegrity`: a real user, the server's realm and a nonce it
    /// handed out, and a key made from the wrong password.
    public var user: String
    public var realm: String?
    public var nonce: String?
    public var wrongKey: IntegrityKey?

    public static let maximumSize = 1536

    public init(seed: UInt64, payload: Int, user: String) {
        rng = SplitMix64(seed: seed)
        var tagSource = SplitMix64(seed: seed ^ 0x7475_726E)
        runTag = UInt32(truncatingIfNeeded: tagSource.next()) & 0xFF_FFFF
        self.payload = payload
        self.user = user
    }

    /// Sets the credentials `wrongIntegrity` needs: the key is derived from
    /// `password` with "-wrong" appended, so it is never the right one.
    public mutating func setChallenge(realm: String, nonce: String, password: String) throws(STUNError) {
        self.realm = realm
        self.nonce = nonce
        wrongKey = try IntegrityKey.longTerm(username: user, realm: realm, password: password + "-wrong")
    }

    /// What a transaction ID of ours says.
    public struct Tag: Equatable, Sendable {
        public var kind: InvalidKind
        public var inWindow: Bool
        public var sequence: UInt64
    }

    func transactionID(_ kind: InvalidKind, inWindow: Bool) -> TransactionID {
        TransactionID(
            high: runTag << 8 | UInt32(kind.index), low: (sequence & ~(1 << 63)) | (inWindow ? 1 << 63 : 0))
    }

    /// The tag in the transaction ID of `bytes` (a datagram that is at least a
    /// STUN header long), when it is one of this run's.
    public func decodeTag(_ bytes: UnsafeRawBufferPointer) -> Tag? {
        guard bytes.count >= STUNHeader.size else { return nil }
        let tid = TransactionID(loadingFrom: bytes.baseAddress! + 8)
        guard tid.high >> 8 == runTag, Int(tid.high & 0xFF) < InvalidKind.allCases.count else { return nil }
        return Tag(
            kind: InvalidKind.allCases[Int(tid.high & 0xFF)], inWindow: tid.low >> 63 == 1,
            sequence: tid.low & ~(1 << 63))
    }

    /// Writes one packet of `kind` at the start of `buffer` (at least
    /// `maximumSize` bytes) and returns its length.
    public mutating func write(
        _ kind: InvalidKind, inWindow: Bool, into buffer: UnsafeMutableRawBufferPointer
    ) throws -> Int {
        precondition(buffer.count >= Self.maximumSize)
        let base = buffer.baseAddress!
        let tid = transactionID(kind, inWindow: inWindow)
        sequence &+= 1
        switch kind {
        case .truncatedHeader:
            var e = try STUNEncoder(into: buffer, method: .binding, class: .request, transactionID: tid)
            try e.appendFingerprint()
            return Int.random(in: 1...(STUNHeader.size - 1), using: &rng)

        case .badCookie:
            _ = try STUNEncoder(into: buffer, method: .binding, class: .request, transactionID: tid)
            var cookie = UInt32.random(in: 0...UInt32.max, using: &rng)
            if cookie == STUNHeader.magicCookie { cookie ^= 1 }
            (base + 4).storeBytes(of: cookie.bigEndian, as: UInt32.self)
            return STUNHeader.size

        case .lengthPastEnd:
            var e = try STUNEncoder(into: buffer, method: .binding, class: .request, transactionID: tid)
            try e.append(.software, utf8: "uturn-bench")
            let count = e.count
            let claimed = count - STUNHeader.size + 4 * Int.random(in: 1...64, using: &rng)
            (base + 2).storeBytes(of: UInt16(claimed).bigEndian, as: UInt16.self)
            return count

        case .attributePastEnd:
            // Header length 8: one TLV header and 4 value bytes; the TLV claims more.
            _ = try STUNEncoder(into: buffer, method: .binding, class: .request, transactionID: tid)
            (base + 2).storeBytes(of: UInt16(8).bigEndian, as: UInt16.self)
            (base + 20).storeBytes(of: STUNAttributeType.software.rawValue.bigEndian, as: UInt16.self)
            let claimed = UInt16(4 + 4 * Int.random(in: 1...300, using: &rng))
            (base + 22).storeBytes(of: claimed.bigEndian, as: UInt16.self)
            (base + 24).storeBytes(of: UInt32(0x6275_6E6B).bigEndian, as: UInt32.self)  // "bunk"
            return STUNHeader.size + 8

        case .randomBytes:
            let n = Int.random(in: 1...1400, using: &rng)
            var i = 0
            while i < n {
                var word = rng.next()
                let k = min(8, n - i)
                withUnsafeBytes(of: &word) { (base + i).copyMemory(from: $0.baseAddress!, byteCount: k) }
                i += k
            }
            return n

        case .unauthenticatedAllocate:
            var e = try STUNEncoder(into: buffer, method: .allocate, class: .request, transactionID: tid)
            try e.appendRequestedTransport(17)
            try e.appendFingerprint()
            return e.count

        case .wrongIntegrity:
            guard let realm, let nonce, let wrongKey else {
                throw TURNError("wrong-integrity needs a REALM and NONCE from the server first")
            }
            var e = try STUNEncoder(into: buffer, method: .allocate, class: .request, transactionID: tid)
            try e.appendRequestedTransport(17)
            try e.append(.username, utf8: user)
            try e.append(.realm, utf8: realm)
            try e.append(.nonce, utf8: nonce)
            try e.appendMessageIntegrity(key: wrongKey)
            try e.appendFingerprint()
            return e.count

        case .unboundChannel, .channelWithoutAllocation:
            var channel = UInt16.random(in: ChannelData.rfc8656Channels, using: &rng)
            if channel == avoidChannel { channel = channel == 0x4FFF ? 0x4001 : channel + 1 }
            ChannelData.writeHeader(channel: channel, payloadLength: UInt16(payload), to: base)
            (base + 4).initializeMemory(as: UInt8.self, repeating: 0x5A, count: payload)
            if payload >= 8 { (base + 4).storeBytes(of: sequence.littleEndian, as: UInt64.self) }
            return ChannelData.headerSize + payload
        }
    }
}
