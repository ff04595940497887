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
        return turn
    }
}
