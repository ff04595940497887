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
/// The source buckets are shared by all workers (`SourceBuckets`: fixed
/// memory, lock-free), so a source's requests count together whichever
/// worker its ports hash to; the total bucket is this worker's.
///
/// Ownership: one per worker (`TURNServer`), used from that worker's thread
/// only. Per packet: no allocation, no reference counting, no lock.
struct SourceRateLimiter: ~Copyable {
    let buckets: SourceBucketsView
    var limits: SourceRateLimits
    var total: TokenBucket

    init(limits: SourceRateLimits, buckets: SourceBucketsView, now: MonotonicTime) {
        self.buckets = buckets
        self.limits = limits
        total = TokenBucket(burst: Self.burst(limits.failedTotalPerSecond), now: now.nanoseconds)
    }

    static func burst(_ rate: UInt64) -> UInt64 { rate * 2 }

    /// Rates change on reload; the buckets keep their state (a source's
    /// bucket refills at the new rate from where it stands).
    mutating func reconfigure(_ new: SourceRateLimits) {
        if new.failedTotalPerSecond != limits.failedTotalPerSecond {
            total.tokens = min(total.tokens, Int64(clamping: Self.burst(new.failedTotalPerSecond)))
        }
        limits = new
    }

    /// Whether a request that may be refused can be handled (false: drop it
    /// unanswered). Takes nothing; `chargeRefusal` takes after a refusal.
    @inline(__always)
    mutating func mayRefuse(_ ip: IPAddress, now: MonotonicTime) -> Bool {
        if limits.failedTotalPerSecond > 0 {
            let rate = limits.failedTotalPerSecond
            guard total.take(0, rate: rate, burst: Self.burst(rate), now: now.nanoseconds), total.tokens > 0 else {
                return false
            }
        }
        guard limits.failedPerSecond > 0 else { return true }
        return buckets.untilToken(.refusal, ip, rate: limits.failedPerSecond, now: now) == 0
    }

    /// Takes one token for a refusal sent to `ip`.
    @inline(__always)
    mutating func chargeRefusal(_ ip: IPAddress, now: MonotonicTime) {
        if limits.failedTotalPerSecond > 0 {
            let rate = limits.failedTotalPerSecond
            _ = total.take(1, rate: rate, burst: Self.burst(rate), now: now.nanoseconds)
        }
        guard limits.failedPerSecond > 0 else { return }
        _ = buckets.take(.refusal, ip, rate: limits.failedPerSecond, now: now)
    }

    /// Takes one token for a Binding answer to `ip`; false: over the limit, drop it.
    @inline(__always)
    mutating func admitBinding(_ ip: IPAddress, now: MonotonicTime) -> Bool {
        guard limits.bindingPerSecond > 0 else { return true }
        return buckets.take(.binding, ip, rate: limits.bindingPerSecond, now: now)
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
        let rate = limits.failedPerSecond
        if buckets.take(.unanswered, ip, rate: rate, now: now) { return 0 }
        let wait = buckets.untilToken(.unanswered, ip, rate: rate, now: now)
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
    /// what this limiter allows (a source's bucket: `SourceBucketsView.untilToken`;
    /// the worker's total: `untilToken` below). With both empty, the
    /// later of the two. Clamped to [minimumBlock, maximumBlock]; 0 when no
    /// bucket of that kind is empty by `now` (nothing to block).
    ///
    /// Call right after the drop, with the same `now`.
    mutating func blockNanoseconds(_ ip: IPAddress, binding: Bool, now: MonotonicTime) -> UInt64 {
        var wait: UInt64 = 0
        if binding {
            guard limits.bindingPerSecond > 0 else { return 0 }
            wait = buckets.untilToken(.binding, ip, rate: limits.bindingPerSecond, now: now)
        } else {
            if limits.failedTotalPerSecond > 0 {
                wait = Self.untilToken(total, rate: limits.failedTotalPerSecond, now: now.nanoseconds)
            }
            if limits.failedPerSecond > 0 {
                wait = max(wait, buckets.untilToken(.refusal, ip, rate: limits.failedPerSecond, now: now))
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
