import STUN

/// Names an allocation inside one worker: a table slot plus the slot's
/// generation at the time. The generation goes up each time the slot is
/// freed, so an id kept by the engine (packed into an io_uring `user_data`)
/// is recognised as stale once its allocation is gone.
public struct AllocationID: Hashable, Sendable {
    public var slot: UInt32
    public var generation: UInt32

    @inlinable
    public init(slot: UInt32, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }

    /// slot in the low 32 bits, generation in the high 32: fits `user_data`
    /// with room for the engine to borrow a few generation bits for a kind tag.
    @inlinable
    public var packed: UInt64 { UInt64(generation) << 32 | UInt64(slot) }

    @inlinable
    public init(packed: UInt64) {
        self.init(slot: UInt32(truncatingIfNeeded: packed), generation: UInt32(truncatingIfNeeded: packed >> 32))
    }
}

/// The transport between client and server (the last element of the 5-tuple).
public enum ClientTransport: UInt8, Sendable {
    case udp = 17
    case tcp = 6
    case tls = 56
    case dtls = 57
}

/// What an allocation relays (REQUESTED-TRANSPORT): UDP datagrams (RFC 8656)
/// or TCP connections (RFC 6062). The raw value is the IP protocol number.
public enum RelayTransport: UInt8, Sendable {
    case udp = 17
    case tcp = 6
}

/// Client address, server (listening) address and transport: what
/// identifies an allocation (RFC 8656 §2.2).
public struct FiveTuple: Hashable, Sendable, TableKey {
    public var client: TransportAddress
    public var server: TransportAddress
    public var transport: ClientTransport

    @inlinable
    public init(client: TransportAddress, server: TransportAddress, transport: ClientTransport = .udp) {
        self.client = client
        self.server = server
        self.transport = transport
    }

    @inline(__always)
    func tableHash(seed: UInt64) -> UInt64 {
        mix(client.tableHash(seed: seed ^ UInt64(transport.rawValue)), server.tableHash(seed: seed))
    }
}

/// A relayed transport address and the engine's handle for its socket,
/// as handed out by a `RelayPortProvider`.
public struct RelayEndpoint: Hashable, Sendable {
    /// The XOR-RELAYED-ADDRESS told to the client.
    public var address: TransportAddress
    /// Opaque to TURN: the engine's socket slot or descriptor.
    public var handle: UInt64
    /// Non-zero when the provider also reserved the next port (EVEN-PORT R bit):
    /// the RESERVATION-TOKEN value returned to the client.
    public var reservationToken: UInt64

    public init(address: TransportAddress, handle: UInt64, reservationToken: UInt64 = 0) {
        self.address = address
        self.handle = handle
        self.reservationToken = reservationToken
    }
}

/// Per-allocation traffic counters, bumped by the engine on the data path.
public struct TrafficCounters: Hashable, Sendable {
    public var packetsToPeer: UInt64 = 0
    public var bytesToPeer: UInt64 = 0
    public var packetsToClient: UInt64 = 0
    public var bytesToClient: UInt64 = 0
    public init() {}
}
