import ArgumentParser
import TURN

extension Settings {
    /// Abuse group (`AbuseOptions`): the per-source request limits. Runs
    /// after the engine group, since the total is shared by the workers.
    static func abuse(_ a: AbuseOptions, workers: Int, turn: inout TURNConfiguration) throws(ValidationError) {
        let ceiling = 10_000_000
        for (flag, value) in [
            ("--failed-request-rate", a.failedRequestRate), ("--failed-request-rate-total", a.failedRequestRateTotal),
            ("--binding-request-rate", a.bindingRequestRate),
        ] where !(0...ceiling).contains(value) {
            throw ValidationError("\(flag) \(value) must be 0 (no limit) to \(ceiling) per second.")
        }
        var limits = SourceRateLimits()
        limits.failedPerSecond = UInt64(a.failedRequestRate)
        limits.bindingPerSecond = UInt64(a.bindingRequestRate)
        if a.failedRequestRateTotal > 0 {
            limits.failedTotalPerSecond = UInt64(max(1, a.failedRequestRateTotal / max(1, workers)))
        }
        turn.sourceLimits = limits
    }

    /// The limits line of the summary.
    var abuseSummary: String {
        let l = turn.sourceLimits
        func rate(_ n: UInt64) -> String { n == 0 ? "no limit" : "\(n)/s" }
        return "request limits per source without an allocation: refusals \(rate(l.failedPerSecond)), Binding \(rate(l.bindingPerSecond)); refusals per worker \(rate(l.failedTotalPerSecond))"
    }
}
