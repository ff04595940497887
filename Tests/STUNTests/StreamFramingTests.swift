import STUN
import Testing

@Suite("Stream framing (TURN over TCP/TLS)")
struct StreamFramingTests {
    /// A Binding request with SOFTWARE: a STUN message with attributes, 20 + 12 bytes.
    static func bindingRequest() throws -> [UInt8] {
        try encode(STUNMessageType(method: .binding, class: .request), TransactionID(high: 3, low: 4)) {
            try $0.append(.software, utf8: "uturn")
        }
    }

    /// A ChannelData frame as it travels on a stream: header, payload, zero padding.
    static func channelData(channel: UInt16 = 0x4001, payload: [UInt8]) -> [UInt8] {
        let padded = (payload.count + 3) & ~3
        return [UInt8(channel >> 8), UInt8(channel & 0xFF), 0, UInt8(payload.count)] + payload
            + [UInt8](repeating: 0, count: padded - payload.count)
    }

    static func next(_ bytes: some Collection<UInt8>) throws -> StreamFraming.Next {
        try Array(bytes).withUnsafeBytes { try StreamFraming.next($0) }
    }

    @Test("limits: a buffer of maxFrameLength holds any frame")
    func limits() throws {
        #expect(StreamFraming.maxSTUNLength == 65552)
        #expect(StreamFraming.maxChannelDataLength == 65540)
        #expect(StreamFraming.maxFrameLength == 65552)
        let stun = [0x00, 0x01, 0xFF, 0xFC] + [UInt8](repeating: 0, count: 65548)
        #expect(try Self.next(stun) == .frame(messageLength: 65552, consumedLength: 65552))
        let cd = [0x40, 0x00, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 65536)
        #expect(try Self.next(cd) == .frame(messageLength: 65539, consumedLength: 65540))
    }

    @Test("a STUN message split at every byte boundary")
    func stunSplit() throws {
        let message = try Self.bindingRequest()
        #expect(message.count == 32)
        #expect(try Self.next([UInt8]()) == .needMore(atLeast: 4))
        for cut in 1..<message.count {
            let expected: StreamFraming.Next = cut < 4 ? .needMore(atLeast: 4) : .needMore(atLeast: message.count)
            #expect(try Self.next(message.prefix(cut)) == expected, "cut at \(cut)")
        }
        #expect(try Self.next(message) == .frame(messageLength: 32, consumedLength: 32))
        // The frame handed on parses as the message.
        try message.withUnsafeBytes { raw in
            let parsed = try STUNMessage(parsing: raw)
            #expect(parsed.messageType == STUNMessageType(method: .binding, class: .request))
        }
    }

    @Test("a ChannelData frame split at every byte boundary")
    func channelDataSplit() throws {
        let frame = Self.channelData(payload: Array("hello".utf8))
        #expect(frame.count == 12)
        for cut in 0..<frame.count {
            let expected: StreamFraming.Next = cut < 4 ? .needMore(atLeast: 4) : .needMore(atLeast: 12)
            #expect(try Self.next(frame.prefix(cut)) == expected, "cut at \(cut)")
        }
        #expect(try Self.next(frame) == .frame(messageLength: 9, consumedLength: 12))
    }

    @Test("padding is consumed for odd payload lengths", arguments: [
        (0, 4, 4), (1, 5, 8), (2, 6, 8), (3, 7, 8), (4, 8, 8), (5, 9, 12),
    ])
    func padding(payloadLength: Int, messageLength: Int, consumedLength: Int) throws {
        let frame = Self.channelData(channel: 0x7FFF, payload: [UInt8](repeating: 0x5A, count: payloadLength))
        #expect(frame.count == consumedLength)
        #expect(try Self.next(frame) == .frame(messageLength: messageLength, consumedLength: consumedLength))
        // Without its padding the frame is not yet whole: the padding belongs to it.
        if consumedLength > messageLength {
            #expect(try Self.next(frame.prefix(messageLength)) == .needMore(atLeast: consumedLength))
        }
        // The message part parses as ChannelData.
        try frame.withUnsafeBytes { raw in
            let cd = try ChannelData(parsing: UnsafeRawBufferPointer(rebasing: raw[0..<messageLength]))
            #expect(cd.channelNumber == 0x7FFF && cd.payload.count == payloadLength)
        }
    }

    @Test("many frames packed in one buffer are walked in sequence")
    func packed() throws {
        let stun = try Self.bindingRequest()
        var stream: [UInt8] = []
        var expected: [(message: Int, consumed: Int, first: UInt8)] = []
        for i in 0..<40 {
            if i % 3 == 0 {
                stream += stun
                expected.append((stun.count, stun.count, stun[0]))
            } else {
                let payload = [UInt8](repeating: UInt8(i), count: i % 7)
                let frame = Self.channelData(channel: 0x4000 + UInt16(i), payload: payload)
                stream += frame
                expected.append((4 + payload.count, frame.count, frame[0]))
            }
        }
        // A partial frame at the end stays for the next read.
        stream += stun.prefix(10)

        var offset = 0
        var walked = 0
        try stream.withUnsafeBytes { raw in
            while true {
                let rest = UnsafeRawBufferPointer(rebasing: raw[offset...])
                switch try StreamFraming.next(rest) {
                case .needMore(let atLeast):
                    #expect(atLeast == stun.count && rest.count == 10)
                    return
                case .frame(let messageLength, let consumedLength):
                    let want = expected[walked]
                    #expect(messageLength == want.message && consumedLength == want.consumed && rest[0] == want.first)
                    if rest[0] >> 6 == 0 {
                        _ = try STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: rest[0..<messageLength]))
                    } else {
                        let cd = try ChannelData(parsing: UnsafeRawBufferPointer(rebasing: rest[0..<messageLength]))
                        #expect(cd.channelNumber == 0x4000 + UInt16(walked))
                    }
                    offset += consumedLength
                    walked += 1
                }
            }
        }
        #expect(walked == expected.count)
    }

    @Test("a first byte that is neither STUN nor ChannelData throws, even alone", arguments: [
        UInt8(0x80), 0xC0, 0xFF, 0xBF,
    ])
    func garbage(first: UInt8) throws {
        #expect(throws: STUNError.notSTUNOrChannelData) { try Self.next([first]) }
        #expect(throws: STUNError.notSTUNOrChannelData) { try Self.next([first, 0x01, 0x00, 0x08] + [UInt8](repeating: 0, count: 28)) }
    }

    @Test("a STUN length that is not a multiple of 4 throws", arguments: [1, 2, 3, 5, 0xFFFF])
    func stunLength(length: Int) throws {
        let header: [UInt8] = [0x00, 0x01, UInt8(length >> 8), UInt8(length & 0xFF)]
        #expect(throws: STUNError.lengthNotMultipleOfFour) { try Self.next(header) }
        #expect(throws: STUNError.lengthNotMultipleOfFour) { try Self.next(header + [UInt8](repeating: 0, count: 40)) }
    }
}
