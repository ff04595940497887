import STUN

/// What the state machine asks of the engine when an allocation needs a
/// relay socket: relay ports are I/O, so the engine owns them.
///
/// Passed as a generic `inout` argument (no existential, no reference
/// counting). A nil return means no port could be had: the client gets 508.
public protocol RelayPortProvider: ~Copyable {
    /// Opens a relay socket of `family` for allocation `id`.
    /// - evenPort: the port must be even (EVEN-PORT).
    /// - reserveNext: also hold the next port (EVEN-PORT with R=1) and return a
    ///   non-zero `reservationToken` for it. The provider keeps the held port
    ///   about 30 s (RFC 8656 §7.2) and frees it itself after that.
    mutating func openRelay(for id: AllocationID, family: IPAddress.Family, evenPort: Bool, reserveNext: Bool)
        -> RelayEndpoint?

    /// Opens the relay socket held under `token` (RESERVATION-TOKEN); nil when
    /// the token is unknown or its hold ran out.
    mutating func openReservedRelay(for id: AllocationID, token: UInt64) -> RelayEndpoint?

    /// Opens a TCP relay (RFC 6062 §5.1) of `family` for allocation `id`: a
    /// socket bound to the relayed transport address and listening, from which
    /// the engine also makes the outgoing connections Connect asks for. No
    /// EVEN-PORT or reservation: RFC 6062 forbids both on TCP allocations.
    /// `closeRelay` receives the endpoint back when the allocation goes.
    mutating func openTCPRelay(for id: AllocationID, family: IPAddress.Family) -> RelayEndpoint?

    /// Closes a relay socket this provider opened (UDP, or a TCP listener).
    mutating func closeRelay(_ endpoint: RelayEndpoint)
}

extension RelayPortProvider where Self: ~Copyable {
    /// A provider without TCP relays: TCP allocations get 508. Engines that
    /// predate RFC 6062 support keep compiling unchanged.
    public mutating func openTCPRelay(for id: AllocationID, family: IPAddress.Family) -> RelayEndpoint? { nil }
}
