/// Standard base64 (RFC 4648 §4, with padding) over raw buffers, for the
/// TURN REST API password and the nonce. STUN has no use for it, so it lives
/// here; no allocation.
enum Base64 {
    @usableFromInline
    static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    /// Encoded length of `n` bytes.
    @inlinable
    static func encodedCount(_ n: Int) -> Int { (n + 2) / 3 * 4 }

    /// Encodes `src` into `dst`; returns bytes written, or 0 when `dst` is too small.
    static func encode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Int {
        let need = encodedCount(src.count)
        guard dst.count >= need else { return 0 }
        let table = alphabet.utf8Start
        var i = 0
        var o = 0
        while i + 3 <= src.count {
            let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8 | UInt32(src[i + 2])
            dst[o] = table[Int(v >> 18 & 63)]
            dst[o + 1] = table[Int(v >> 12 & 63)]
            dst[o + 2] = table[Int(v >> 6 & 63)]
            dst[o + 3] = table[Int(v & 63)]
            i += 3
            o += 4
        }
        let rest = src.count - i
        if rest > 0 {
            var v = UInt32(src[i]) << 16
            if rest == 2 { v |= UInt32(src[i + 1]) << 8 }
            dst[o] = table[Int(v >> 18 & 63)]
            dst[o + 1] = table[Int(v >> 12 & 63)]
            dst[o + 2] = rest == 2 ? table[Int(v >> 6 & 63)] : UInt8(ascii: "=")
            dst[o + 3] = UInt8(ascii: "=")
            o += 4
        }
        return o
    }

    @inlinable
    static func value(of c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(c - UInt8(ascii: "a") + 26)
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0") + 52)
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    /// Decodes unpadded-multiple-of-4 base64 without padding characters
    /// (the nonce never pads). Returns bytes written or nil on bad input.
    static func decodeUnpadded(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Int? {
        guard src.count % 4 == 0, dst.count >= src.count / 4 * 3 else { return nil }
        var o = 0
        var i = 0
        while i < src.count {
            guard let a = value(of: src[i]), let b = value(of: src[i + 1]),
                let c = value(of: src[i + 2]), let d = value(of: src[i + 3])
            else { return nil }
            let v = a << 18 | b << 12 | c << 6 | d
            dst[o] = UInt8(truncatingIfNeeded: v >> 16)
            dst[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
            dst[o + 2] = UInt8(truncatingIfNeeded: v)
            o += 3
            i += 4
        }
        return o
    }
}
