import STUN
import Testing

@Suite("ChannelData and demultiplexing")
struct ChannelDataTests {
    @Test("parse: channel, payload, UDP padding ignored")
    func parse() throws {
        for frame in [hex("40 01 00 05 68 65 6c 6c 6f"), hex("40 01 00 05 68 65 6c 6c 6f 00 00 00")] {
            try frame.withUnsafeBytes { raw in
                let cd = try ChannelData(parsing: raw)
                #expect(cd.channelNumber == 0x4001)
                #expect(Array(cd.payload) == Array("hello".utf8))
            }
        }
    }

    @Test("parse errors", arguments: [
        (hex("40 01 00"), STUNError.truncatedChannelData),
        (hex("40 01 00 06 68 65 6c 6c 6f"), .truncatedChannelData),
        (hex("80 00 00 00"), .invalidChannelNumber(0x8000)),
        (hex("3f ff 00 00"), .invalidChannelNumber(0x3FFF)),
    ])
    func parseErrors(frame: [UInt8], error: STUNError) {
        frame.withUnsafeBytes { raw -> Void in
            #expect(throws: error) { try ChannelData(parsing: raw) }
        }
    }

    @Test("RFC 5766 channel numbers 0x5000-0x7FFF parse (TURN decides whether to bind them)")
    func rfc5766Range() throws {
        try hex("7f ff 00 01 2a").withUnsafeBytes { raw in
            let cd = try ChannelData(parsing: raw)
            #expect(cd.channelNumber == 0x7FFF && Array(cd.payload) == [0x2a])
        }
    }

    @Test("empty payload is valid")
    func emptyPayload() throws {
        try hex("4f ff 00 00").withUnsafeBytes { raw in
            let cd = try ChannelData(parsing: raw)
            #expect(cd.channelNumber == 0x4FFF && cd.payload.isEmpty)
        }
    }

    @Test("frame in place: UDP unpadded, stream padded with zeros")
    func frame() throws {
        var buffer = [UInt8](repeating: 0xAA, count: 16)
        for (i, b) in "hello".utf8.enumerated() { buffer[4 + i] = b }
        let udp = try buffer.withUnsafeMutableBytes {
            try ChannelData.frame(in: $0, channel: 0x4002, payloadLength: 5, stream: false)
        }
        #expect(udp == 9)
        #expect(Array(buffer[0..<10]) == hex("40 02 00 05 68 65 6c 6c 6f aa"))
        let tcp = try buffer.withUnsafeMutableBytes {
            try ChannelData.frame(in: $0, channel: 0x4002, payloadLength: 5, stream: true)
        }
        #expect(tcp == 12)
        #expect(Array(buffer[0..<13]) == hex("40 02 00 05 68 65 6c 6c 6f 00 00 00 aa"))
        #expect(buffer.withUnsafeBytes { ChannelData.streamFrameSize($0) } == 12)
        #expect(ChannelData.frameSize(payloadLength: 8, stream: true) == 12)
    }

    @Test("frame errors: bad channel, no room")
    func frameErrors() {
        var buffer = [UInt8](repeating: 0, count: 10)
        buffer.withUnsafeMutableBytes { raw in
            #expect(throws: STUNError.invalidChannelNumber(0x3000)) {
                try ChannelData.frame(in: raw, channel: 0x3000, payloadLength: 1, stream: false)
            }
            #expect(throws: STUNError.bufferTooSmall) {
                try ChannelData.frame(in: raw, channel: 0x4000, payloadLength: 7, stream: false)
            }
            #expect(throws: STUNError.bufferTooSmall) {
                try ChannelData.frame(in: raw, channel: 0x4000, payloadLength: 5, stream: true)
            }
        }
    }

    @Test("first-byte demultiplexing", arguments: [
        ([UInt8](), PacketKind.other), ([0x00], .stun), ([0x3F, 0], .stun), ([0x40], .channelData),
        ([0x7F], .channelData), ([0x80], .other), ([0xC0], .other), ([0x16], .stun),
    ])
    func classify(bytes: [UInt8], kind: PacketKind) {
        #expect(bytes.withUnsafeBytes { PacketKind(classifying: $0) } == kind)
    }
}

@Suite("Data and Send indications")
struct IndicationTests {
    static let peers = [TransportAddress("203.0.113.9:40000")!, TransportAddress("[2001:db8::7]:5")!]

    @Test("Data indication: encode, parse back", arguments: peers, [0, 1, 5, 8, 1200])
    func dataIndication(peer: TransportAddress, length: Int) throws {
        var rng = SplitMix64(seed: UInt64(length))
        let payload = rng.bytes(length)
        let tid = rng.transactionID()
        var buffer = [UInt8](repeating: 0xEE, count: 1400)
        let size = try buffer.withUnsafeMutableBytes { out in
            try payload.withUnsafeBytes { try DataIndication.encode(into: out, payload: $0, peer: peer, transactionID: tid) }
        }
        #expect(size == DataIndication.size(peerFamily: peer.ip.family, payloadLength: length))
        #expect(size % 4 == 0)
        try withMessage(Array(buffer[0..<size])) { m in
            #expect(m.messageType == STUNMessageType(method: .data, class: .indication))
            #expect(m.transactionID == tid)
            #expect(m.xorPeerAddress == peer)
            #expect(bytes(m.data) == payload)
        }
    }

    @Test("Data indication in place around a payload in the receive buffer", arguments: peers)
    func dataIndicationInPlace(peer: TransportAddress) throws {
        let headroom = 48  // fits the IPv6 prefix
        var buffer = [UInt8](repeating: 0xEE, count: 256)
        for i in 0..<7 { buffer[headroom + i] = UInt8(i) }
        let tid = TransactionID(high: 1, low: 2)
        let range = try buffer.withUnsafeMutableBytes {
            try DataIndication.encode(in: $0, payloadOffset: headroom, payloadLength: 7, peer: peer, transactionID: tid)
        }
        #expect(range.lowerBound == headroom - DataIndication.prefixSize(peerFamily: peer.ip.family))
        #expect(range.upperBound == headroom + 8)
        try withMessage(Array(buffer[range])) { m in
            #expect(m.xorPeerAddress == peer)
            #expect(bytes(m.data) == [0, 1, 2, 3, 4, 5, 6])
        }
        #expect(buffer[headroom + 7] == 0)  // padding
    }

    @Test("Data indication: not enough headroom or room")
    func dataIndicationErrors() {
        var buffer = [UInt8](repeating: 0, count: 64)
        let peer = Self.peers[1]
        buffer.withUnsafeMutableBytes { raw in
            #expect(throws: STUNError.bufferTooSmall) {
                try DataIndication.encode(in: raw, payloadOffset: 36, payloadLength: 4, peer: peer, transactionID: .init(high: 0, low: 0))
            }
            #expect(throws: STUNError.bufferTooSmall) {
                try DataIndication.encode(in: raw, payloadOffset: 48, payloadLength: 17, peer: peer, transactionID: .init(high: 0, low: 0))
            }
        }
    }

    @Test("Send indication: peer and data; wrong type; missing attributes")
    func sendIndication() throws {
        let tid = TransactionID(high: 7, low: 9)
        let peer = Self.peers[0]
        let send = STUNMessageType(method: .send, class: .indication)
        let good = try encode(send, tid) { e in
            try e.append(.xorPeerAddress, xorAddress: peer)
            try [UInt8](repeating: 0x61, count: 3).withUnsafeBytes { try e.append(.data, bytes: $0) }
        }
        try good.withUnsafeBytes { raw in
            let s = try SendIndication(parsing: raw)
            #expect(s.peer == peer)
            #expect(Array(s.data) == [0x61, 0x61, 0x61])
        }
        let noData = try encode(send, tid) { try $0.append(.xorPeerAddress, xorAddress: peer) }
        let noPeer = try encode(send, tid) { try $0.append(.data, utf8: "x") }
        let request = try encode(STUNMessageType(method: .send, class: .request), tid) { _ in }
        noData.withUnsafeBytes { raw -> Void in
            #expect(throws: STUNError.missingAttribute(.data)) { try SendIndication(parsing: raw) }
        }
        noPeer.withUnsafeBytes { raw -> Void in
            #expect(throws: STUNError.missingAttribute(.xorPeerAddress)) { try SendIndication(parsing: raw) }
        }
        request.withUnsafeBytes { raw -> Void in
            #expect(throws: STUNError.wrongMessageType) { try SendIndication(parsing: raw) }
        }
    }
}
