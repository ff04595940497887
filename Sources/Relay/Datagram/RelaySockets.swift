import Glibc
import STUN
import TURN
import URing

/// One worker's relay sockets: one UDP socket per allocation and family,
/// bound to a port from the worker's own slice of the range.
///
/// This is the engine's side of `RelayPortProvider`: the TURN state machine
/// asks for a socket while it handles an Allocate, and gives it back on
/// delete or expiry. Opening and closing are system calls on the control
/// path; the receive is armed by the worker after the request is handled
/// (`pendingArm`), and a closed socket's pending receive is cancelled through
/// the ring (`pendingCancel`), so this type never touches the ring itself.
///
/// A socket is named by its slot (`RelayEndpoint.handle`) and the slot's
/// generation travels in the receive's user_data, so a completion that
/// arrives after the socket was closed is recognised and dropped.
struct RelaySockets: ~Copyable, RelayPortProvider {
    struct Slot {
        var fd: Int32 = -1
        var generation: UInt32 = 0
        var allocation = AllocationID(slot: 0, generation: 0)
        var port: UInt16 = 0
        var family: IPAddress.Family = .v4
        /// The relay address the socket is bound to.
        var ip = IPAddress(v4: 0)
        var inUse = false
        /// A TCP listener (RFC 6062 allocation) rather than a UDP socket.
        var tcp = false
    }

    /// A port held for a later RESERVATION-TOKEN (EVEN-PORT with R=1).
    struct Reservation {
        var token: UInt64
        var family: IPAddress.Family
        var ip: IPAddress
        var port: UInt16
        var expires: UInt32
    }

    let capacity: Int
    private let slots: UnsafeMutablePointer<Slot>
    private var freeSlots: SlotFreeList
    private var portsV4: PortRange
    private var portsV6: PortRange
    /// Relay addresses per family; new sockets take them in turn. The port
    /// ranges are per family, shared by its addresses (a port in use on one
    /// address is not handed out on another), which keeps one free list.
    let relayIPsV4: [IPAddress]
    let relayIPsV6: [IPAddress]
    private var turnV4 = 0
    private var turnV6 = 0
    let externalIPv4: IPAddress?
    /// UDP_GRO on every relay socket (`--gro-peer`).
    let gro: Bool
    private var reservations: [Reservation] = []
    private var nextToken: UInt64
    /// Seconds (worker clock) used to expire reservations; set by the worker each tick.
    var nowSeconds: UInt32 = 0

    /// Slots opened since the worker last armed, whose receive must be armed.
    private(set) var toArm: [UInt32] = []
    /// Receives to cancel (user_data of the armed receive of a closed socket).
    private(set) var toCancel: [UserData] = []
    /// Set when a socket could not be opened for a reason other than a busy port.
    private(set) var lastError: String?

    static let reservationSeconds: UInt32 = 30

    init(capacity: Int, ports: ClosedRange<UInt16>, config: EngineConfig, workerIndex: Int) {
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(), count: capacity)
        freeSlots = SlotFreeList(capacity: capacity)
        portsV4 = PortRange(ports)
        portsV6 = PortRange(ports)
        relayIPsV4 = config.relayIPsV4
        relayIPsV6 = config.relayIPsV6
        externalIPv4 = config.externalIPv4
        gro = config.groPeer
        nextToken = UInt64(workerIndex + 1) << 48
        toArm.reserveCapacity(64)
        toCancel.reserveCapacity(64)
    }

    deinit {
        for i in 0..<capacity where slots[i].inUse { Glibc.close(slots[i].fd) }
        slots.deallocate()
    }

    /// The slot for a relay receive completion, if it is still the socket that
    /// receive was armed for.
    @inline(__always)
    func live(slot: UInt32, generation: UInt32) -> Slot? {
        guard Int(slot) < capacity else { return nil }
        let s = slots[Int(slot)]
        return s.inUse && s.generation == generation ? s : nil
    }

    /// The slot if a socket is open in it.
    func openSlot(_ slot: UInt32) -> Slot? {
        guard Int(slot) < capacity, slots[Int(slot)].inUse else { return nil }
        return slots[Int(slot)]
    }

    @inline(__always)
    func fd(ofHandle handle: UInt64) -> Int32 {
        let i = Int(truncatingIfNeeded: handle)
        return i < capacity && slots[i].inUse ? slots[i].fd : -1
    }

    // The worker reads these lists by index and then clears them, so their
    // storage (reserved at start) is reused and never copied.
    var pendingArms: Int { toArm.count }
    func pendingArm(_ i: Int) -> UInt32 { toArm[i] }
    mutating func clearPendingArms() { toArm.removeAll(keepingCapacity: true) }

    var pendingCancels: Int { toCancel.count }
    func pendingCancel(_ i: Int) -> UserData { toCancel[i] }
    mutating func clearPendingCancels() { toCancel.removeAll(keepingCapacity: true) }

    var openCount: Int { capacity - freeSlots.count }

    // MARK: RelayPortProvider

    mutating func openRelay(for id: AllocationID, family: IPAddress.Family, evenPort: Bool, reserveNext: Bool)
        -> RelayEndpoint?
    {
        expireReservations()
        // Try a bounded number of ports: one may be busy (another process, or
        // a just-closed socket whose cancel has not completed yet).
        for _ in 0..<16 {
            guard let port = takePort(family: family, even: evenPort || reserveNext) else { return nil }
            var token: UInt64 = 0
            guard let ip = pickRelayIP(family) else {
                givePort(family: family, port)
                return nil
            }
            if reserveNext {
                guard takeSpecificPort(family: family, port &+ 1) else {
                    givePort(family: family, port)
                    continue
                }
                nextToken &+= 1
                token = nextToken
                reservations.append(
                    Reservation(
                        token: token, family: family, ip: ip, port: port + 1, expires: nowSeconds + Self.reservationSeconds))
            }
            switch open(id: id, family: family, ip: ip, port: port) {
            case .opened(let endpoint):
                var e = endpoint
                e.reservationToken = token
                return e
            case .busy:
                givePort(family: family, port)
                if reserveNext { dropReservation(token: token, returnPort: true) }
                continue
            case .failed:
                givePort(family: family, port)
                if reserveNext { dropReservation(token: token, returnPort: true) }
                return nil
            }
        }
        return nil
    }

    /// RFC 6062: a TCP listener on the relayed address, which peers connect
    /// to and outgoing connections to peers start from.
    mutating func openTCPRelay(for id: AllocationID, family: IPAddress.Family) -> RelayEndpoint? {
        for _ in 0..<16 {
            guard let port = takePort(family: family, even: false) else { return nil }
            guard let ip = pickRelayIP(family) else {
                givePort(family: family, port)
                return nil
            }
            switch open(id: id, family: family, ip: ip, port: port, tcp: true) {
            case .opened(let endpoint): return endpoint
            case .busy:
                givePort(family: family, port)
                continue
            case .failed:
                givePort(family: family, port)
                return nil
            }
        }
        return nil
    }

    /// The address a TCP relay slot is bound to (the relay IP, not the advertised one).
    func boundAddress(ofHandle handle: UInt64) -> TransportAddress? {
        let i = Int(truncatingIfNeeded: handle)
        guard i < capacity, slots[i].inUse else { return nil }
        return TransportAddress(ip: slots[i].ip, port: slots[i].port)
    }

    mutating func openReservedRelay(for id: AllocationID, token: UInt64) -> RelayEndpoint? {
        expireReservations()
        guard let i = reservations.firstIndex(where: { $0.token == token }) else { return nil }
        let r = reservations.remove(at: i)
        if case .opened(let endpoint) = open(id: id, family: r.family, ip: r.ip, port: r.port) { return endpoint }
        givePort(family: r.family, r.port)
        return nil
    }

    mutating func closeRelay(_ endpoint: RelayEndpoint) {
        let i = Int(truncatingIfNeeded: endpoint.handle)
        guard i < capacity, slots[i].inUse else { return }
        let s = slots[i]
        toCancel.append(UserData(kind: s.tcp ? .relayAccept : .relayReceive, slot: UInt32(i), generation: s.generation))
        Glibc.close(s.fd)
        givePort(family: s.family, s.port)
        slots[i].inUse = false
        slots[i].tcp = false
        slots[i].fd = -1
        slots[i].generation = UserData.nextGeneration(after: s.generation)
        freeSlots.give(UInt32(i))
    }

    // MARK: Internals

    private enum OpenResult {
        case opened(RelayEndpoint)
        case busy
        case failed
    }

    /// The next relay address of `family` (round-robin), nil if it has none.
    private mutating func pickRelayIP(_ family: IPAddress.Family) -> IPAddress? {
        let list = family == .v4 ? relayIPsV4 : relayIPsV6
        guard !list.isEmpty else { return nil }
        if family == .v4 {
            turnV4 &+= 1
            return list[turnV4 % list.count]
        }
        turnV6 &+= 1
        return list[turnV6 % list.count]
    }

    private mutating func open(
        id: AllocationID, family: IPAddress.Family, ip: IPAddress, port: UInt16, tcp: Bool = false
    ) -> OpenResult {
        guard freeSlots.count > 0 else { return .failed }
        let bindAddress = SocketAddress(TransportAddress(ip: ip, port: port))
        if tcp {
            let listener: StreamSocket
            do {
                listener = try StreamSocket.listening(on: bindAddress, reusePort: true, backlog: 64)
            } catch {
                if error.errno == .addressInUse { return .busy }
                lastError = "TCP relay socket \(TransportAddress(ip: ip, port: port)): \(error)"
                return .failed
            }
            return .opened(take(fd: listener.rawValue, id: id, family: family, port: port, ip: ip, tcp: true))
        }
        let socket: UDPSocket
        do {
            socket = try UDPSocket.bound(to: bindAddress)
        } catch {
            if error.errno == .addressInUse { return .busy }
            lastError = "relay socket \(TransportAddress(ip: ip, port: port)): \(error)"
            return .failed
        }
        if gro {
            do { try socket.setUDPGRO(true) } catch {
                socket.close()
                lastError = "relay socket \(TransportAddress(ip: ip, port: port)): UDP_GRO: \(error)"
                return .failed
            }
        }
        return .opened(take(fd: socket.rawValue, id: id, family: family, port: port, ip: ip, tcp: false))
    }

    private mutating func take(fd: Int32, id: AllocationID, family: IPAddress.Family, port: UInt16, ip: IPAddress, tcp: Bool)
        -> RelayEndpoint
    {
        let slot = Int(freeSlots.take()!)  // checked by `open`
        slots[slot].fd = fd
        slots[slot].allocation = id
        slots[slot].port = port
        slots[slot].family = family
        slots[slot].ip = ip
        slots[slot].inUse = true
        slots[slot].tcp = tcp
        toArm.append(UInt32(slot))
        let advertised = family == .v4 ? (externalIPv4 ?? ip) : ip
        return RelayEndpoint(address: TransportAddress(ip: advertised, port: port), handle: UInt64(slot))
    }

    private mutating func takePort(family: IPAddress.Family, even: Bool) -> UInt16? {
        switch family {
        case .v4: even ? portsV4.take(where: { $0 & 1 == 0 }) : portsV4.take()
        case .v6: even ? portsV6.take(where: { $0 & 1 == 0 }) : portsV6.take()
        }
    }

    private mutating func takeSpecificPort(family: IPAddress.Family, _ port: UInt16) -> Bool {
        switch family {
        case .v4: portsV4.take(where: { $0 == port }) != nil
        case .v6: portsV6.take(where: { $0 == port }) != nil
        }
    }

    private mutating func givePort(family: IPAddress.Family, _ port: UInt16) {
        switch family {
        case .v4: portsV4.give(port)
        case .v6: portsV6.give(port)
        }
    }

    private mutating func dropReservation(token: UInt64, returnPort: Bool) {
        guard let i = reservations.firstIndex(where: { $0.token == token }) else { return }
        let r = reservations.remove(at: i)
        if returnPort { givePort(family: r.family, r.port) }
    }

    /// Frees ports held for reservations that were not claimed in time.
    mutating func expireReservations() {
        while let i = reservations.firstIndex(where: { $0.expires <= nowSeconds }) {
            let r = reservations.remove(at: i)
            givePort(family: r.family, r.port)
        }
    }
}
