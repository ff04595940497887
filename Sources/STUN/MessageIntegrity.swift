import CCrypto

/// HMAC computation for MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes) and
/// MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, 16...32 bytes), RFC 8489 §14.5–14.6.
///
/// The HMAC covers the message up to the attribute, with the header's length
/// field as if the attribute were the last one. The verifier hashes a patched
/// 20-byte copy of the header and then the rest in place, so nothing is copied
/// and nothing allocated.
public enum MessageIntegrity {
    /// Bytes of MESSAGE-INTEGRITY's value.
    public static let sha1Length = 20
    /// Bytes of a full MESSAGE-INTEGRITY-SHA256 value.
    public static let sha256Length = 32

    /// HMAC over `message[0..<end]` with the length field replaced by
    /// `patchedLength`, written to `out` (20 or 32 bytes).
    /// `message.count >= end >= 20` is the caller's promise.
    @usableFromInline
    static func hmac(
        sha256: Bool, key: IntegrityKey, message: UnsafeRawBufferPointer, end: Int, patchedLength: Int,
        out: UnsafeMutablePointer<UInt8>
    ) {
        var header: (UInt64, UInt64, UInt32) = (0, 0, 0)
        withUnsafeMutableBytes(of: &header) { h in
            h.baseAddress!.copyMemory(from: message.baseAddress!, byteCount: STUNHeader.size)
            h.storeBytes(of: UInt16(truncatingIfNeeded: patchedLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            let body = message.baseAddress! + STUNHeader.size
            let bodyLength = end - STUNHeader.size
            key.withUnsafeBytes { k in
                if sha256 {
                    uturn_hmac_sha256(k.baseAddress, k.count, h.baseAddress, 20, body, bodyLength, nil, 0, out)
                } else {
                    uturn_hmac_sha1(k.baseAddress, k.count, h.baseAddress, 20, body, bodyLength, nil, 0, out)
                }
            }
        }
    }

    /// Recomputes the HMAC of the attribute at `offset` and compares it in constant time.
    @usableFromInline
    static func verify(sha256: Bool, key: IntegrityKey, message: UnsafeRawBufferPointer, attributeAt offset: Int) -> Bool {
        let sent = STUNAttribute(in: message, at: offset).value
        var computed: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &computed) { c in
            let out = c.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let patched = offset + 4 + padded4(sent.count) - STUNHeader.size
            hmac(sha256: sha256, key: key, message: message, end: offset, patchedLength: patched, out: out)
            return uturn_ct_equal(out, sent.baseAddress!, sent.count) == 1
        }
    }
}

extension STUNMessage {
    /// True when MESSAGE-INTEGRITY is present and matches `key`.
    @inlinable
    public func verifyMessageIntegrity(key: IntegrityKey) -> Bool {
        guard let offset = offset(.messageIntegrity) else { return false }
        return MessageIntegrity.verify(sha256: false, key: key, message: bytes, attributeAt: offset)
    }

    /// True when MESSAGE-INTEGRITY-SHA256 is present and its (possibly
    /// truncated) value matches `key`.
    @inlinable
    public func verifyMessageIntegritySHA256(key: IntegrityKey) -> Bool {
        guard let offset = offset(.messageIntegritySHA256) else { return false }
        return MessageIntegrity.verify(sha256: true, key: key, message: bytes, attributeAt: offset)
    }
}
