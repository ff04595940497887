/// A byte token bucket for the optional per-allocation bandwidth cap.
///
/// Refills at `rate` bytes per second up to `burst` bytes. Integer-only and
/// allocation-free: it runs per relayed packet. Time that refilled less than
/// one byte is not consumed (`last` stays put), so slow rates still refill.
struct TokenBucket {
    var tokens: UInt64
    var last: UInt64  // nanoseconds

    init(burst: UInt64, now: UInt64) {
        tokens = burst
        last = now
    }

    /// Takes `bytes` if available. `rate` is capped at 16 GB/s by the config
    /// so `elapsed * rate` cannot overflow (elapsed is capped at one second).
    @inline(__always)
    mutating func take(_ bytes: UInt64, rate: UInt64, burst: UInt64, now: UInt64) -> Bool {
        if now > last {
            let elapsed = min(now - last, 1_000_000_000)
            let refill = elapsed * rate / 1_000_000_000
            if refill > 0 || now - last >= 1_000_000_000 {
                tokens = min(burst, tokens + refill)
                last = now
            }
        }
        guard tokens >= bytes else { return false }
        tokens -= bytes
        return true
    }
}
