import CCrypto
import STUN

/// Rates of the per-source request limits (`--failed-request-rate`,
/// `--binding-request-rate`, `--failed-request-rate-total`). 0: no limit.
public struct SourceRateLimits: Sendable, Equatable {
    /// Refusals (400, 401, 438) per second one source may get; burst is twice it.
    public var failedPerSecond: UInt64 = 0
    /// Binding answers per second one source may get; burst is twice it.
    public var bindingPerSecond: UInt64 = 0
    /// Refusals per second this worker sends to all sources together; burst is twice it.
    public var failedTotalPerSecond: UInt64 = 0

    public init(failedPerSecond: UInt64 = 0, bindingPerSecond: UInt64 = 0, failedTotalPerSecond: UInt64 = 0) {
        self.failedPerSecond = failedPerSecond
        self.bindingPerSecond = bindingPerSecond
        self.failedTotalPerSecond = failedTotalPerSecond
    }

    public var isOff: Bool { failedPerSecond == 0 && bindingPerSecond == 0 && failedTotalPerSecond == 0 }
}

/// Per-source token buckets that decide, before any parsing beyond the
/// header or any HMAC, whether a request from a client with no allocation
/// is worth answering (see `TURNServer.handleSTUN`).
///
/// A source is an IPv4 address or an IPv6 /64 (one host usually holds a
/// whole /64). Refusals (400, 401, 438) take a token from the source's
/// refusal bucket and from the worker's total bucket; while either is empty,
/// requests from that source are dropped unanswered. Binding answers take
/// from a bucket of their own. A legitimate client spends one refusal per
/// login (the 401 challenge), so it never meets the limit.
///
/// Memory is fixed: a 4-way set-associative table of `capacity` entries,
/// allocated once. A source not in the table takes the least recently
/// used entry of its set with full buckets, so a flood from spoofed
/// addresses evicts entries freely; the worker's total bucket is what
/// bounds the answers such a flood gets.
///
/// Ownership: one per worker (`TURNServer`), used from that worker's thread
/// only. Per packet: no allocation, no reference counting.
///
/// Invariant: `entries` holds `capacity` initialised entries from `init`
/// until `deinit`; `capacity` is a power of two and a multiple of `ways`.
struct SourceRateLimiter: ~Copyable {
    struct Entry {
        var family: UInt8 = 0  // 0: unused
        var key: UInt64 = 0
        var lastUse: UInt64 = 0
        var failed = TokenBucket(burst: 0, now: 0)
        var binding = TokenBucket(burst: 0, now: 0)
        /// Datagrams that got no answer (`chargeUnanswered`).
        var unanswered = TokenBucket(burst: 0, now: 0)
    }

    static let ways = 4
    let capacity: Int
    let entries: UnsafeMutablePointer<Entry>
    let seed: UInt64
    var limits: SourceRateLimits
    var total: TokenBucket

    init(limits: SourceRateLimits, capacity requested: Int = 4096, now: MonotonicTime) {
        var n = Self.ways
        while n < requested { n <<= 1 }
        capacity = n
        entries = .allocate(capacity: n)
        entries.initialize(repeating: Entry(), count: n)
        var s: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &s) { uturn_random_bytes($0.baseAddress, 8) }
        seed = s
        self.limits = limits
        total = TokenBucket(burst: Self.burst(limits.failedTotalPerSecond), now: now.nanoseconds)
    }

    deinit { entries.deallocate() }

    static func burst(_ rate: UInt64) -> UInt64 { rate * 2 }

    /// Rates change on reload; the buckets keep their tokens (capped at the new burst).
    mutating func reconfigure(_ new: SourceRateLimits) {
        if new.failedTotalPerSecond != limits.failedTotalPerSecond {
            total.tokens = min(total.tokens, Int64(clamping: Self.burst(new.failedTotalPerSecond)))
        }
        limits = new
    }

    /// The key of a source: IPv4 address, or the /64 of an IPv6 address.
    @inline(__always)
    static func key(_ ip: IPAddress) -> UInt64 { ip.family == .v4 ? ip.low : ip.high }

    /// The entry of `ip`, created (evicting the set's least recently used) if absent.
    @inline(__always)
    mutating func entry(_ ip: IPAddress, now: UInt64) -> UnsafeMutablePointer<Entry> {
        let key = Self.key(ip)
        let family = ip.family.rawValue
        let set = Int(truncatingIfNeeded: mix(seed ^ UInt64(family), key)) & (capacity / Self.ways - 1)
        let base = entries + set * Self.ways
        var victim = base
        for i in 0..<Self.ways {
            let e = base + i
            if e.pointee.family == family && e.pointee.key == key {
                e.pointee.lastUse = now
                return e
            }
            if e.pointee.family == 0 || e.pointee.lastUse < victim.pointee.lastUse { victim = e }
            if victim.pointee.family == 0 { break }
        }
        victim.pointee = Entry(
            family: family, key: key, lastUse: now,
            failed: TokenBucket(burst: Self.burst(limits.failedPerSecond), now: now),
            binding: TokenBucket(burst: Self.burst(limits.bindingPerSecond), now: now),
            unanswered: TokenBucket(burst: Self.burst(limits.failedPerSecond), now: now))
        return victim
    }

    /// Whether a request that may be refused can be handled (false: drop it
    /// unanswered). Takes nothing; `chargeRefusal` takes after a refusal.
    @inline(__always)
    mutating func mayRefuse(_ ip: IPAddress, now: MonotonicTime) -> Bool {
        let t = now.nanoseconds
        if limits.failedTotalPerSecond > 0 {
            let rate = limits.failedTotalPerSecond
            guard total.take(0, rate: rate, burst: Self.burst(rate), now: t), total.tokens > 0 else { return false }
        }
        guard limits.failedPerSecond > 0 else { return true }
        let e = entry(ip, now: t)
        let rate = limits.failedPerSecond
        return e.pointee.failed.take(0, rate: rate, burst: Self.burst(rate), now: t) && e.pointee.failed.tokens > 0
    }

    /// Takes one token for a refusal sent to `ip`.
    @inline(__always)
    mutating func chargeRefusal(_ ip: IPAddress, now: MonotonicTime) {
        let t = now.nanoseconds
        if limits.failedTotalPerSecond > 0 {
            let rate = limits.failedTotalPerSecond
            _ = total.take(1, rate: rate, burst: Self.burst(rate), now: t)
        }
        guard limits.failedPerSecond > 0 else { return }
        let rate = limits.failedPerSecond
        _ = entry(ip, now: t).pointee.failed.take(1, rate: rate, burst: Self.burst(rate), now: t)
    }

    /// Takes one token for a Binding answer to `ip`; false: over the limit, drop it.
    @inline(__always)
    mutating func admitBinding(_ ip: IPAddress, now: MonotonicTime) -> Bool {
        guard limits.bindingPerSecond > 0 else { return true }
        let t = now.nanoseconds
        let rate = limits.bindingPerSecond
        return entry(ip, now: t).pointee.binding.take(1, rate: rate, burst: Self.burst(rate), now: t)
    }
}

extension SourceRateLimiter {
    /// Takes one token for a datagram from `ip` that was dropped with no
    /// answer (ChannelData with no allocation, unparsable bytes), from a
    /// bucket of its own at the refusal rate (`failedPerSecond`, burst twice
    /// it). Returns how long the kernel source filter may drop what this
    /// 5-tuple sends that is not STUN: 0 while the bucket holds tokens, else
    /// until it holds one again (clamped as `blockNanoseconds`).
    ///
    /// Nothing else changes: such datagrams are dropped in any case, and
    /// this bucket is not the refusal bucket, so a host whose clients keep
    /// sending media after their allocations are gone (a restart) can still
    /// get its 401s and allocate again.
    mutating func chargeUnanswered(_ ip: IPAddress, now: MonotonicTime) -> UInt64 {
        guard limits.failedPerSecond > 0 else { return 0 }
        let t = now.nanoseconds
        let rate = limits.failedPerSecond
        let e = entry(ip, now: t)
        if e.pointee.unanswered.take(1, rate: rate, burst: Self.burst(rate), now: t) { return 0 }
        let wait = Self.untilToken(e.pointee.unanswered, rate: rate, now: t)
        guard wait > 0 else { return 0 }
        return min(max(wait, Self.minimumBlock), Self.maximumBlock)
    }

    /// Bounds of `blockNanoseconds`: at least a millisecond (a shorter
    /// block is not worth its map update), at most a second (a reload that
    /// lowers or lifts the limits takes effect within it).
    static let minimumBlock: UInt64 = 1_000_000
    static let maximumBlock: UInt64 = 1_000_000_000

    /// How long the kernel source filter may drop every datagram from a
    /// source whose request was just dropped (`binding`: by the Binding
    /// limit; else by the refusal limits): until the bucket that refused it
    /// holds a token again, so the answers a source gets per second stay
    /// what this limiter allows. The bucket refills continuously at `rate`
    /// from `last`, so a bucket at `tokens ≤ 0` holds one token again after
    /// (1 − tokens) × 10⁹ / rate ns from `last`, less the time since then.
    /// With both the source's and the worker's total bucket empty, the
    /// later of the two. Clamped to [minimumBlock, maximumBlock]; 0 when no
    /// bucket of that kind is empty by `now` (nothing to block).
    ///
    /// Call right after the drop, with the same `now`: the buckets were
    /// refilled to it then.
    mutating func blockNanoseconds(_ ip: IPAddress, binding: Bool, now: MonotonicTime) -> UInt64 {
        let t = now.nanoseconds
        var wait: UInt64 = 0
        if binding {
            guard limits.bindingPerSecond > 0 else { return 0 }
            wait = Self.untilToken(entry(ip, now: t).pointee.binding, rate: limits.bindingPerSecond, now: t)
        } else {
            if limits.failedTotalPerSecond > 0 {
                wait = Self.untilToken(total, rate: limits.failedTotalPerSecond, now: t)
            }
            if limits.failedPerSecond > 0 {
                let f = entry(ip, now: t).pointee.failed
                wait = max(wait, Self.untilToken(f, rate: limits.failedPerSecond, now: t))
            }
        }
        guard wait > 0 else { return 0 }
        return min(max(wait, Self.minimumBlock), Self.maximumBlock)
    }

    /// Nanoseconds from `now` until `bucket` (refilling at `rate` per second)
    /// holds one token; 0 if it holds one already.
    static func untilToken(_ bucket: TokenBucket, rate: UInt64, now: UInt64) -> UInt64 {
        guard bucket.tokens <= 0, rate > 0 else { return 0 }
        let needed = UInt64(1 - bucket.tokens)  // ≥ 1; at most burst + 1
        // Rounded up, so the bucket holds the token when the block ends.
        let (product, overflow) = needed.multipliedReportingOverflow(by: 1_000_000_000)
        let refill = overflow ? UInt64.max : (product + rate - 1) / rate
        let elapsed = now > bucket.last ? now - bucket.last : 0
        return refill > elapsed ? refill - elapsed : 0
    }
}
