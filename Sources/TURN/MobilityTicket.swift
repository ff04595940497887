import CCrypto
import STUN

/// What a MOBILITY-TICKET (RFC 8016) names: the allocation it lets a client
/// move, on which worker, and which of the allocation's tickets it is.
public struct MobilityTicket: Sendable, Equatable {
    /// The worker that owns the allocation (`TURNServer.setWorkerIndex`).
    public var worker: UInt16
    public var allocation: AllocationID
    /// Goes up with every ticket the allocation is given; only the newest
    /// one moves it, so an older ticket cannot be replayed.
    public var counter: UInt32

    public init(worker: UInt16, allocation: AllocationID, counter: UInt32) {
        self.worker = worker
        self.allocation = allocation
        self.counter = counter
    }
}

/// Seals and opens mobility tickets with a server secret, so a client
/// cannot read, forge or alter one. Every worker holds the same secret.
///
/// Layout (48 bytes):
///
///     version 1 (1) | iv (15, random) | ciphertext (16) | tag (16)
///
/// The 16-byte plaintext is worker (2) | zero (2) | slot (4) |
/// generation (4) | counter (4), big-endian. Encryption is HMAC-SHA256 used
/// as a pseudo-random function in counter mode (keystream =
/// HMAC(secret, "E" | iv), one block is enough); the tag is
/// HMAC(secret, "M" | version | iv | ciphertext) truncated to 16 bytes:
/// encrypt-then-MAC with domain-separated inputs. The IV is fresh random
/// for each ticket, so the keystream never repeats in practice (120 bits).
/// CCrypto's HMAC never allocates; the random IV is control path only.
///
/// What the ticket does not carry is checked against the table on use:
/// the owner's username (another user's ticket gets 441) and the newest
/// counter (a replayed older ticket gets 400). A ticket dies with its
/// allocation: the slot's generation changes when it is freed.
public struct MobilityTicketCodec: Sendable {
    var secret: LongTermKey

    public static let length = 48
    static let version: UInt8 = 1
    static let ivLength = 15
    static let plainLength = 16
    static let tagLength = 16

    /// A codec with a fresh random secret.
    public init() {
        var raw = [UInt8](repeating: 0, count: 32)
        let ok = raw.withUnsafeMutableBytes { uturn_random_bytes($0.baseAddress, 32) }
        precondition(ok == 1, "no random bytes for the mobility ticket secret")
        self.init(secret: raw)
    }

    /// A codec with a given 32-byte secret (tests).
    public init(secret: [UInt8]) {
        precondition(secret.count == 32, "mobility ticket secret is 32 bytes")
        self.secret = LongTermKey(algorithm: .sha256, bytes: secret)!
    }

    /// The sealed ticket (control path).
    public func seal(_ ticket: MobilityTicket) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.length)
        out[0] = Self.version
        let ok = out.withUnsafeMutableBytes { uturn_random_bytes($0.baseAddress! + 1, Self.ivLength) }
        precondition(ok == 1, "no random bytes for a mobility ticket")
        var plain = [UInt8](repeating: 0, count: Self.plainLength)
        plain.withUnsafeMutableBytes { p in
            p.storeBytes(of: ticket.worker.bigEndian, toByteOffset: 0, as: UInt16.self)
            p.storeBytes(of: ticket.allocation.slot.bigEndian, toByteOffset: 4, as: UInt32.self)
            p.storeBytes(of: ticket.allocation.generation.bigEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: ticket.counter.bigEndian, toByteOffset: 12, as: UInt32.self)
        }
        let stream = keystream(iv: Array(out[1...Self.ivLength]))
        for i in 0..<Self.plainLength { out[1 + Self.ivLength + i] = plain[i] ^ stream[i] }
        let tag = self.tag(Array(out[0..<(1 + Self.ivLength + Self.plainLength)]))
        for i in 0..<Self.tagLength { out[1 + Self.ivLength + Self.plainLength + i] = tag[i] }
        return out
    }

    /// The ticket in `bytes`, or nil when it is not one this secret sealed
    /// (wrong length or version, altered, forged).
    public func open(_ bytes: UnsafeRawBufferPointer) -> MobilityTicket? {
        guard bytes.count == Self.length, bytes[0] == Self.version else { return nil }
        let sealed = Array(bytes)
        let body = 1 + Self.ivLength + Self.plainLength
        let want = tag(Array(sealed[0..<body]))
        let ok = want.withUnsafeBytes { w in
            uturn_ct_equal(w.baseAddress, bytes.baseAddress! + body, Self.tagLength)
        }
        guard ok == 1 else { return nil }
        let stream = keystream(iv: Array(sealed[1...Self.ivLength]))
        var plain = [UInt8](repeating: 0, count: Self.plainLength)
        for i in 0..<Self.plainLength { plain[i] = sealed[1 + Self.ivLength + i] ^ stream[i] }
        return plain.withUnsafeBytes { p in
            guard p.loadUnaligned(fromByteOffset: 2, as: UInt16.self) == 0 else { return nil }
            return MobilityTicket(
                worker: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt16.self)),
                allocation: AllocationID(
                    slot: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                    generation: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))),
                counter: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        }
    }

    private func keystream(iv: [UInt8]) -> [UInt8] { prf(label: UInt8(ascii: "E"), iv) }

    private func tag(_ data: [UInt8]) -> [UInt8] { Array(prf(label: UInt8(ascii: "M"), data)[0..<Self.tagLength]) }

    private func prf(label: UInt8, _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var label = label
        secret.withUnsafeBytes { key in
            withUnsafeBytes(of: &label) { l in
                data.withUnsafeBytes { d in
                    out.withUnsafeMutableBytes { o in
                        uturn_hmac_sha256(
                            key.baseAddress, key.count, l.baseAddress, 1, d.baseAddress, d.count, nil, 0,
                            o.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
        }
        return out
    }
}
