import CCrypto
import STUN
import Synchronization

/// The per-source request buckets (`--failed-request-rate`,
/// `--binding-request-rate`, and the unanswered-datagram bucket at the
/// refusal rate), shared by every worker, so a source is held to its rate
/// however its ports hash across the workers' SO_REUSEPORT sockets (a
/// source spreading its requests over many ports would otherwise get
/// `workers` times its budget).
///
/// Each bucket is one 64-bit word updated with compare-and-exchange, no
/// lock: a generic cell rate algorithm (GCRA), which is a token bucket kept
/// as a single "theoretical arrival time" (TAT). A bucket of rate r and
/// burst B = 2r admits a request at time t when TAT − t ≤ τ = (B − 1)·T,
/// with T = 1/r, and then sets TAT = max(TAT, t) + T. A full bucket has
/// TAT ≤ t. So TAT is never more than B·T = 2 s ahead of the clock.
///
/// A word holds a 20-bit tag of the source and its TAT in microseconds,
/// modulo 2⁴⁴ (203 days). The table is direct-mapped, `slotsPerKind`
/// words per kind, indexed by a keyed hash of the source: a source whose
/// word holds another tag starts with a full bucket and takes the word
/// over. So a flood from spoofed addresses evicts freely (the worker's
/// total bucket is what bounds its answers), and two sources share a
/// bucket only when both slot and tag collide (about one pair in 2²⁰ of
/// those sharing a slot). A TAT more than 4 s ahead of the clock cannot be
/// a live bucket's: it is a word idle for longer than the 2⁴⁴ µs wrap, and
/// is read as full.
///
/// Memory: 3 × `slotsPerKind` × 8 bytes, allocated once (384 KiB by
/// default). Invariant: `words` holds `3 × slotsPerKind` initialised
/// atomics from init until deinit; the workers reach them through
/// `SourceBucketsView`, whose pointer the owner (the engine, which outlives
/// its workers, or a TURNServer's own) keeps valid.
public final class SourceBuckets: @unchecked Sendable {
    enum Kind: Int {
        case refusal = 0
        case binding = 1
        case unanswered = 2
    }

    let slotsPerKind: Int
    private let words: UnsafeMutablePointer<Atomic<UInt64>>
    private let seed: UInt64

    /// `slotsPerKind` is rounded up to a power of two.
    public init(slotsPerKind requested: Int = 16_384) {
        var n = 1
        while n < requested { n <<= 1 }
        slotsPerKind = n
        words = .allocate(capacity: 3 * n)
        for i in 0..<(3 * n) { (words + i).initialize(to: Atomic(0)) }
        var s: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &s) { uturn_random_bytes($0.baseAddress, 8) }
        seed = s
    }

    deinit {
        words.deinitialize(count: 3 * slotsPerKind)
        words.deallocate()
    }

    /// The table as the workers use it: no reference counting per request.
    var view: SourceBucketsView { SourceBucketsView(words: words, mask: slotsPerKind - 1, seed: seed) }
}

/// A worker's handle on `SourceBuckets`. Valid while the owner lives (see
/// there); safe from any thread (each word is an atomic).
struct SourceBucketsView {
    let words: UnsafeMutablePointer<Atomic<UInt64>>
    let mask: Int
    let seed: UInt64

    static let timeBits: UInt64 = 44
    static let timeMask: UInt64 = (1 << timeBits) - 1
    /// More than this ahead of the clock is not a live bucket (see SourceBuckets).
    static let staleAhead: UInt64 = 4_000_000

    /// The word of `ip`'s bucket of `kind`, and the tag that marks it as that source's (never 0).
    @inline(__always)
    func slot(_ kind: SourceBuckets.Kind, _ ip: IPAddress) -> (UnsafeMutablePointer<Atomic<UInt64>>, UInt64) {
        let key = ip.family == .v4 ? ip.low : ip.high  // an IPv4 address, or an IPv6 /64
        let h = mix(seed ^ UInt64(ip.family.rawValue), key)
        let index = kind.rawValue * (mask + 1) + Int(truncatingIfNeeded: h) & mask
        let tag = max(h >> Self.timeBits, 1)
        return (words + index, tag)
    }

    /// How far (µs) the bucket in `word` is ahead of `now` (µs) for `tag`:
    /// 0 when it is full, another source's, or stale.
    @inline(__always)
    static func ahead(_ word: UInt64, tag: UInt64, now: UInt64) -> UInt64 {
        guard word >> timeBits == tag else { return 0 }
        let d = ((word & timeMask) &- now) & timeMask
        return d > staleAhead ? 0 : d
    }

    /// T (µs between tokens) and τ (µs the TAT may run ahead) for `rate`.
    @inline(__always)
    static func shape(rate: UInt64) -> (interval: UInt64, tolerance: UInt64) {
        let interval = max(1_000_000 / rate, 1)
        return (interval, (2 * rate - 1) * interval)
    }

    /// Takes one token from `ip`'s bucket of `kind` at `rate` per second
    /// (burst twice it); false, and nothing taken, when it is empty.
    @inline(__always)
    func take(_ kind: SourceBuckets.Kind, _ ip: IPAddress, rate: UInt64, now: MonotonicTime) -> Bool {
        let (word, tag) = slot(kind, ip)
        let (interval, tolerance) = Self.shape(rate: rate)
        let t = now.nanoseconds / 1000
        var old = word.pointee.load(ordering: .relaxed)
        while true {
            let ahead = Self.ahead(old, tag: tag, now: t)
            guard ahead <= tolerance else { return false }
            let new = tag << Self.timeBits | ((t &+ ahead &+ interval) & Self.timeMask)
            let (done, seen) = word.pointee.compareExchange(
                expected: old, desired: new, ordering: .relaxed)
            if done { return true }
            old = seen
        }
    }

    /// Nanoseconds from `now` until `ip`'s bucket of `kind` holds a token:
    /// 0 when it holds one now. Takes nothing.
    @inline(__always)
    func untilToken(_ kind: SourceBuckets.Kind, _ ip: IPAddress, rate: UInt64, now: MonotonicTime) -> UInt64 {
        let (word, tag) = slot(kind, ip)
        let (_, tolerance) = Self.shape(rate: rate)
        let ahead = Self.ahead(word.pointee.load(ordering: .relaxed), tag: tag, now: now.nanoseconds / 1000)
        return ahead > tolerance ? (ahead - tolerance) * 1000 : 0
    }
}
