import STUN

/// Inputs for the STUN codec benchmarks, built once in setup. Every buffer is
/// raw memory owned here, so the measured operations touch no reference-counted
/// object. `init` runs each operation once and checks its result, so a
/// benchmark can never be timing an error path.
public struct STUNFixture: ~Copyable {
    /// RFC 5769 §2.1 sample request (Binding, short-term MESSAGE-INTEGRITY, FINGERPRINT).
    public let binding: Buffer
    /// An authenticated Allocate: REQUESTED-TRANSPORT, LIFETIME, USERNAME, REALM,
    /// NONCE, MESSAGE-INTEGRITY (long-term MD5 key), FINGERPRINT.
    public let allocate: Buffer
    /// The long-term key of `allocate` (and of the encoded response).
    public let key: IntegrityKey
    /// A ChannelData frame on channel 0x4001 with a 160-byte payload (an audio packet).
    public let channelData: Buffer
    /// Response buffer for the encoder benchmark.
    public let response: Buffer
    /// Receive buffer for the Data indication benchmark: the payload sits at
    /// `DataIndication.prefixSize(.v4)`, as the engine leaves headroom for it.
    public let indication: Buffer
    public let transactionID = TransactionID(high: 0x0102_0304, low: 0x0506_0708_090A_0B0C)
    public let client = TransportAddress(ip: IPAddress(v4: 0xC633_6407), port: 40000)  // 198.51.100.7
    public let peer = TransportAddress(ip: IPAddress(v4: 0x0808_0808), port: 5000)  // 8.8.8.8
    public static let payloadLength = 160

    public static let rfc5769Request = hex(
        """
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    public init() {
        binding = Buffer(Self.rfc5769Request)
        key = try! IntegrityKey.longTerm(username: "alice", realm: "example.org", password: "secret")

        var allocate = Buffer(capacity: 1500)
        let key = self.key
        let tid = transactionID
        allocate.count = try! Self.encode(into: allocate.raw) { (raw) throws(STUNError) in
            var enc = try STUNEncoder(into: raw, method: .allocate, class: .request, transactionID: tid)
            try enc.appendRequestedTransport(17)
            try enc.appendLifetime(600)
            try enc.append(.username, utf8: "alice")
            try enc.append(.realm, utf8: "example.org")
            try enc.append(.nonce, utf8: "obMatJos2AAAAAQ2fmxyvP7wBl6pW8ZNBz9dWxa")
            try enc.appendMessageIntegrity(key: key)
            try enc.appendFingerprint()
            return enc.count
        }
        self.allocate = allocate

        var frame = [UInt8](repeating: 0, count: ChannelData.headerSize + Self.payloadLength)
        frame[0] = 0x40
        frame[1] = 0x01
        frame[2] = UInt8(Self.payloadLength >> 8)
        frame[3] = UInt8(Self.payloadLength & 0xFF)
        for i in 0..<Self.payloadLength { frame[4 + i] = UInt8(truncatingIfNeeded: i) }
        channelData = Buffer(frame, capacity: 1500)

        response = Buffer(capacity: 1500)
        indication = Buffer(capacity: 1500)
        let prefix = DataIndication.prefixSize(peerFamily: .v4)
        for i in 0..<Self.payloadLength { indication.raw[prefix + i] = UInt8(truncatingIfNeeded: i) }

        // Each operation must take its success path.
        precondition(STUNOps.parseBinding(self) == 0x0001 + 0x58, "RFC 5769 request did not parse")
        precondition(STUNOps.parseAndVerifyAllocate(self) == 3, "Allocate did not verify")
        precondition(STUNOps.parseChannelData(self) == 0x4001 + Self.payloadLength, "ChannelData did not parse")
        let n = STUNOps.encodeSuccessResponse(self)
        precondition(n == 20 + 12 + 24 + 8, "response encode failed")
        let ok = try! STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: response.raw[0..<n]))
        precondition(ok.verifyMessageIntegrity(key: key) && ok.verifyFingerprint() && ok.xorMappedAddress == client)
        let m = STUNOps.encodeDataIndication(self)
        precondition(m == DataIndication.size(peerFamily: .v4, payloadLength: Self.payloadLength))
        let di = try! SendIndicationCheck.parse(UnsafeRawBufferPointer(rebasing: indication.raw[0..<m]))
        precondition(di.peer == peer && di.payloadCount == Self.payloadLength, "Data indication malformed")
    }

    static func encode(
        into raw: UnsafeMutableRawBufferPointer, _ body: (UnsafeMutableRawBufferPointer) throws(STUNError) -> Int
    ) throws(STUNError) -> Int {
        try body(raw)
    }
}

/// Reads back a Data indication (setup-time check only).
enum SendIndicationCheck {
    static func parse(_ bytes: UnsafeRawBufferPointer) throws(STUNError) -> (peer: TransportAddress?, payloadCount: Int) {
        let m = try STUNMessage(parsing: bytes)
        precondition(m.method == .data && m.messageClass == .indication)
        return (m.xorPeerAddress, m.data?.count ?? -1)
    }
}

/// The measured STUN operations. Each is a separate, never-inlined function
/// so the benchmarks and the callgrind ARC check (Benchmarks/arc-check.sh)
/// measure exactly the same code. They return a small checksum of what
/// they produced, so nothing can be optimised away.
public enum STUNOps {
    /// Parse the RFC 5769 §2.1 Binding request. Returns type + length.
    @inline(never)
    public static func parseBinding(_ f: borrowing STUNFixture) -> Int {
        do throws(STUNError) {
            let m = try STUNMessage(parsing: f.binding.bytes)
            return Int(m.messageType.rawValue) + m.length
        } catch {
            return -1
        }
    }

    /// Parse an authenticated Allocate, verify MESSAGE-INTEGRITY (HMAC-SHA1
    /// with the long-term key) and FINGERPRINT (CRC-32). Returns 3 on success.
    @inline(never)
    public static func parseAndVerifyAllocate(_ f: borrowing STUNFixture) -> Int {
        do throws(STUNError) {
            let m = try STUNMessage(parsing: f.allocate.bytes)
            return 1 + (m.verifyMessageIntegrity(key: f.key) ? 1 : 0) + (m.verifyFingerprint() ? 1 : 0)
        } catch {
            return -1
        }
    }

    /// Classify and parse a ChannelData frame. Returns channel + payload length.
    @inline(never)
    public static func parseChannelData(_ f: borrowing STUNFixture) -> Int {
        guard PacketKind(classifying: f.channelData.bytes) == .channelData else { return -2 }
        do throws(STUNError) {
            let cd = try ChannelData(parsing: f.channelData.bytes)
            return Int(cd.channelNumber) + cd.payload.count
        } catch {
            return -1
        }
    }

    /// Encode a Binding success response with XOR-MAPPED-ADDRESS,
    /// MESSAGE-INTEGRITY (long-term key) and FINGERPRINT into a preallocated
    /// buffer. Returns the message size.
    @inline(never)
    public static func encodeSuccessResponse(_ f: borrowing STUNFixture) -> Int {
        do throws(STUNError) {
            var enc = try STUNEncoder(
                into: f.response.raw, method: .binding, class: .successResponse, transactionID: f.transactionID)
            try enc.append(.xorMappedAddress, xorAddress: f.client)
            try enc.appendMessageIntegrity(key: f.key)
            try enc.appendFingerprint()
            return enc.count
        } catch {
            return -1
        }
    }

    /// Wrap a peer's payload, already in the receive buffer, in a Data
    /// indication in place. Returns the message size.
    @inline(never)
    public static func encodeDataIndication(_ f: borrowing STUNFixture) -> Int {
        do throws(STUNError) {
            return try DataIndication.encode(
                in: f.indication.raw, payloadOffset: DataIndication.prefixSize(peerFamily: .v4),
                payloadLength: STUNFixture.payloadLength, peer: f.peer, transactionID: f.transactionID
            ).count
        } catch {
            return -1
        }
    }
}
