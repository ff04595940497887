import ArgumentParser
import STUN
import TURN

extension Settings {
    /// Limits group (`LimitOptions`): quotas, lifetimes and the drain time are
    /// checked, then the TURN configuration is built with the lifetimes, the
    /// channel-number strictness and the families that have a relay address.
    /// The quotas and drain time themselves are kept on `Settings`.
    static func turnConfiguration(
        _ l: LimitOptions, credentials: CredentialStore, peerPolicy: PeerPolicy, relays: [IPAddress]
    ) throws(ValidationError) -> TURNConfiguration {
        if l.userQuota < 0 { throw ValidationError("--user-quota \(l.userQuota) must be 0 (unlimited) or more.") }
        if l.totalQuota < 0 { throw ValidationError("--total-quota \(l.totalQuota) must be 0 (unlimited) or more.") }
        if !(1...86400).contains(l.maxAllocateLifetime) {
            throw ValidationError("--max-allocate-lifetime \(l.maxAllocateLifetime) must be 1...86400 seconds.")
        }
        if !(1...604800).contains(l.staleNonce) {
            throw ValidationError("--stale-nonce \(l.staleNonce) must be 1...604800 seconds.")
        }
        if !(0...3600).contains(l.drainTimeout) {
            throw ValidationError("--drain-timeout \(l.drainTimeout) must be 0...3600 seconds.")
        }
        var turn = TURNConfiguration(
            credentials: credentials, peerPolicy: peerPolicy, nonces: NonceCodec(lifetime: UInt32(l.staleNonce)))
        turn.maxLifetime = UInt32(l.maxAllocateLifetime)
        turn.defaultLifetime = min(turn.defaultLifetime, turn.maxLifetime)
        turn.strictChannelNumbers = l.strictChannelNumbers
        turn.relayFamilies = Set(relays.map(\.family))
        turn.rateLimits = try rateLimits(l)
        return turn
    }

    /// The traffic limits (`--max-bps` and the rest), each checked.
    static func rateLimits(_ l: LimitOptions) throws(ValidationError) -> RateLimits {
        func rate(_ value: Int, _ flag: String) throws(ValidationError) -> UInt64 {
            guard value >= 0, UInt64(value) <= RateLimits.maxRate else {
                throw ValidationError("\(flag) \(value) must be 0 (unlimited) up to \(RateLimits.maxRate).")
            }
            return UInt64(value)
        }
        var r = RateLimits()
        r.maxBytesPerSecond = try rate(l.maxBps, "--max-bps")
        r.capacityBytesPerSecond = try rate(l.bpsCapacity, "--bps-capacity")
        r.userMaxBytesPerSecond = try rate(l.userMaxBps, "--user-max-bps")
        r.maxPacketsPerSecond = try rate(l.maxPps, "--max-pps")
        r.maxNewPeersPerSecond = try rate(l.maxNewPeersPerSecond, "--max-new-peers-per-second")
        guard let policy = CapacityPolicy(rawValue: l.bpsCapacityPolicy) else {
            throw ValidationError("--bps-capacity-policy \(l.bpsCapacityPolicy) must be refuse or share.")
        }
        r.capacityPolicy = policy
        if r.capacityPolicy == .refuse && r.capacityBytesPerSecond != 0 && r.maxBytesPerSecond > r.capacityBytesPerSecond {
            throw ValidationError(
                "--max-bps \(r.maxBytesPerSecond) is more than --bps-capacity \(r.capacityBytesPerSecond): under --bps-capacity-policy refuse no allocation could be made.")
        }
        return r
    }
}
