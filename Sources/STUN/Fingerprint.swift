/// FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message up to the attribute,
/// XORed with 0x5354554e so it never matches a CRC in another protocol.
public enum Fingerprint {
    public static let xorValue: UInt32 = 0x5354_554E

    /// The FINGERPRINT value for `prefix`: the message bytes before the
    /// attribute, with the header length already counting the attribute.
    @inlinable
    public static func compute(_ prefix: UnsafeRawBufferPointer) -> UInt32 {
        CRC32.checksum(prefix) ^ xorValue
    }
}

extension STUNMessage {
    /// True when FINGERPRINT is present and matches. FINGERPRINT is last (the
    /// parser insists), so the header length already covers it and no patching
    /// is needed.
    @inlinable
    public func verifyFingerprint() -> Bool {
        guard let offset = offset(.fingerprint) else { return false }
        let sent = bytes.be32(offset + 4)
        return Fingerprint.compute(UnsafeRawBufferPointer(rebasing: bytes[0..<offset])) == sent
    }
}
