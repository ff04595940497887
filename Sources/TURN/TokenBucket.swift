/// A token bucket for the per-allocation limits (bytes per second in each
/// direction, packets per second, new peers per second).
///
/// It refills at `rate` tokens per second up to `burst`, and admits an item
/// while it holds any tokens at all, charging the item's whole size even if
/// that takes it below zero (a deficit the refill pays back first). So a
/// packet larger than the burst still passes, and the long-run rate is
/// exactly `rate`: what passes in any window of `t` seconds is at most
/// `burst + rate × t` plus one item.
///
/// Integer-only and allocation-free: it runs per relayed packet. Time that
/// refilled less than one token is not consumed (`last` stays put), so slow
/// rates still refill, and the fraction of a token is kept for the next call.
struct TokenBucket {
    var tokens: Int64
    var last: UInt64  // nanoseconds

    init(burst: UInt64, now: UInt64) {
        tokens = Int64(clamping: burst)
        last = now
    }

    /// The burst for `rate`: a tenth of a second's worth (a short burst keeps
    /// the rate a peer sees within a few percent of `rate` over seconds),
    /// but never less than `floor` (so slow rates still pass whole packets
    /// without waiting on the deficit).
    static func burst(rate: UInt64, floor: UInt64) -> UInt64 { max(rate / 10, floor) }

    /// Refills for the time since the last call, then takes `amount` if the
    /// bucket is above zero. `rate` is capped at 16 × 10⁹ by the
    /// configuration, so `elapsed × rate` cannot overflow (elapsed is below
    /// one second there).
    @inline(__always)
    mutating func take(_ amount: UInt64, rate: UInt64, burst: UInt64, now: UInt64) -> Bool {
        refill(rate: rate, burst: burst, now: now)
        guard tokens > 0 else { return false }
        tokens &-= Int64(clamping: amount)
        return true
    }

    /// Charges `amount` whether or not the bucket holds tokens (bytes of a
    /// byte stream, already read: they pass, and the reader pauses instead),
    /// and says whether tokens are left afterwards (false: pause reading).
    @inline(__always)
    mutating func charge(_ amount: UInt64, rate: UInt64, burst: UInt64, now: UInt64) -> Bool {
        refill(rate: rate, burst: burst, now: now)
        tokens &-= Int64(clamping: amount)
        return tokens > 0
    }

    /// Nanoseconds from `now` until the bucket holds `level` tokens at
    /// `rate` (0 if it holds them now). Refills first.
    mutating func delay(untilLevel level: Int64, rate: UInt64, burst: UInt64, now: UInt64) -> UInt64 {
        refill(rate: rate, burst: burst, now: now)
        guard tokens < level, rate > 0 else { return 0 }
        let missing = UInt64(level &- tokens)
        // A deficit too large for the product (not reachable with rates and
        // buffers in range) is treated as a second's wait.
        let (ns, overflow) = missing.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? 1_000_000_000 : ns / rate
    }

    /// Adds the tokens earned since `last`, up to `burst`.
    @inline(__always)
    mutating func refill(rate: UInt64, burst: UInt64, now: UInt64) {
        if now > last {
            let elapsed = now - last
            if elapsed >= 1_000_000_000 {
                // A second or more: a second's worth, which fills any burst we use.
                tokens = min(Int64(clamping: burst), tokens &+ Int64(clamping: rate))
                last = now
            } else {
                let earned = elapsed * rate / 1_000_000_000
                if earned > 0 {
                    tokens = min(Int64(clamping: burst), tokens &+ Int64(clamping: earned))
                    // Advance by the time those whole tokens took, not to
                    // `now`: the fraction of a token left over counts next
                    // time (at low rates, dropping it would lose up to a
                    // quarter of the rate). earned ≤ rate ≤ 16 × 10⁹, so
                    // the product stays below 2⁶⁴.
                    last += earned * 1_000_000_000 / rate
                }
            }
        }
    }
}
