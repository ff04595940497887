import STUN

/// Bytes from hex as the RFCs print it (spaces and line breaks ignored).
func hex(_ text: String) -> [UInt8] {
    let digits = text.filter(\.isHexDigit).map { UInt8(String($0), radix: 16)! }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}

/// Parses `bytes` and hands the view to `body` while the bytes are alive.
func withMessage<R>(_ bytes: [UInt8], _ body: (STUNMessage) throws -> R) throws -> R {
    try bytes.withUnsafeBytes { raw in try body(STUNMessage(parsing: raw)) }
}

/// The error parsing `bytes` throws, or nil when it parses.
func parseError(_ bytes: [UInt8]) -> STUNError? {
    bytes.withUnsafeBytes { raw in
        do throws(STUNError) {
            _ = try STUNMessage(parsing: raw)
            return nil
        } catch {
            return error
        }
    }
}

/// Runs an encoder over a scratch buffer and returns the bytes it wrote.
func encode(
    _ type: STUNMessageType, _ tid: TransactionID, capacity: Int = 2048, padding: UInt8 = 0,
    _ body: (inout STUNEncoder) throws -> Void
) throws -> [UInt8] {
    var buffer = [UInt8](repeating: 0xEE, count: capacity)
    let count = try buffer.withUnsafeMutableBytes { raw in
        var encoder = try STUNEncoder(into: raw, type: type, transactionID: tid)
        encoder.paddingByte = padding
        try body(&encoder)
        return encoder.count
    }
    return Array(buffer[0..<count])
}

func bytes(_ buffer: UnsafeRawBufferPointer?) -> [UInt8]? { buffer.map { Array($0) } }

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny deterministic PRNG so property
/// tests are reproducible from their seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SplitMix64 {
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }

    mutating func transactionID() -> TransactionID {
        TransactionID(high: UInt32.random(in: 0...UInt32.max, using: &self), low: next())
    }

    mutating func address() -> TransportAddress {
        let port = UInt16.random(in: 0...UInt16.max, using: &self)
        if Bool.random(using: &self) {
            return TransportAddress(ip: IPAddress(v4: UInt32.random(in: 0...UInt32.max, using: &self)), port: port)
        }
        return TransportAddress(ip: IPAddress(v6High: next(), v6Low: next()), port: port)
    }
}

/// The RFC 5769 vectors (April 2010), as printed in the RFC. Sections 2.1–2.3
/// pad USERNAME / SOFTWARE with 0x20 bytes, 2.4 with zeros.
enum RFC5769 {
    static let password = "VOkJxbRl1RmTxUk/WvJxBt"
    static let transactionID = TransactionID(high: 0xB7E7_A701, low: 0xBC34_D686_FA87_DFAE)

    static let request = hex(
        """
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    static let ipv4Response = hex(
        """
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    static let ipv6Response = hex(
        """
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)

    static let longTermTransactionID = TransactionID(high: 0x78AD_3433, low: 0xC6AD_72C0_29DA_412E)
    static let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
    static let nonce = "f//499k954d6OL34oL9FSTvy64sA"
    static let realm = "example.org"

    static let longTermRequest = hex(
        """
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
        """)
}
