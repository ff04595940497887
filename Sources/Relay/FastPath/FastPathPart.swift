import CFastPath
import STUN
import TURN

/// The worker's side of the kernel fast path: it turns what the TURN tables
/// say about this worker's allocations into map entries (one client-side and
/// one peer-side entry per offloaded channel), keeps them in step, and reads
/// back what the kernel relayed. Only this worker writes these entries, and
/// only counter slots of its own range, so no lock is needed.
///
/// All of it is the control path: entries change when a request changes an
/// allocation (ChannelBind, CreatePermission, Refresh), when one ends, on a
/// reload and on the 1 s tick; the packets themselves never reach user space.
struct FastPathPart: ~Copyable {
    /// One offloaded channel (its allocation and number are its place in `index`).
    struct Entry {
        var peer = TransportAddress(ip: IPAddress(v4: 0), port: 0)
        var client = fp_client_key()
        var peerKey = fp_peer_key()
        /// Monotonic seconds: the entry forwards nothing after this.
        var expiresAt: UInt32 = 0
        /// What the kernel had relayed at the last read.
        var reported = fp_counters()
    }

    /// What the kernel relayed for one allocation since the last read.
    struct Relayed {
        var allocation: AllocationID
        var packetsToPeer: UInt64
        var bytesToPeer: UInt64
        var packetsToClient: UInt64
        var bytesToClient: UInt64
    }

    private let maps: FastPathMaps?
    /// This worker's counter slots are counterBase ..< counterBase + capacity.
    private let counterBase: UInt32
    let capacity: Int
    private let entries: UnsafeMutablePointer<Entry>
    private var free: SlotFreeList
    /// Allocation → channel → entry, so a sync touches only that
    /// allocation's entries. Dictionaries are fine: the control path.
    private var index: [AllocationID: [UInt16: UInt32]] = [:]
    /// Entries in use.
    private(set) var count = 0
    private let log: EngineLog
    /// Map writes that failed (logged once each few seconds at most).
    private var lastErrorLog: UInt32 = 0

    init(maps: FastPathMaps?, workerIndex: Int, workers: Int, log: @escaping EngineLog) {
        self.maps = maps
        capacity = maps == nil ? 0 : Int(FP_MAX_ENTRIES) / max(1, workers)
        counterBase = UInt32(workerIndex * capacity)
        entries = .allocate(capacity: max(1, capacity))
        entries.initialize(repeating: Entry(), count: max(1, capacity))
        free = SlotFreeList(capacity: capacity)
        self.log = log
    }

    deinit {
        entries.deinitialize(count: max(1, capacity))
        entries.deallocate()
    }

    var enabled: Bool { maps != nil }

    /// Makes the entries of `allocation` match `routes` (what TURN says may
    /// be offloaded now): new channels get entries, changed ones are
    /// rewritten, the rest are deleted. Returns what the deleted ones relayed.
    mutating func sync(_ allocation: AllocationID, routes: [OffloadRoute], now: UInt32) -> Relayed? {
        guard let maps else { return nil }
        var gone = Relayed(allocation: allocation, packetsToPeer: 0, bytesToPeer: 0, packetsToClient: 0, bytesToClient: 0)
        var channels = index[allocation] ?? [:]
        var wanted = Set<UInt16>()
        for route in routes where Self.offloadable(route) {
            wanted.insert(route.channel)
            if let e = channels[route.channel] {
                if entries[Int(e)].peer != route.peer {
                    add(remove(e, maps: maps), to: &gone)
                    channels[route.channel] = nil
                } else {
                    if entries[Int(e)].expiresAt != route.expiresAt {
                        entries[Int(e)].expiresAt = route.expiresAt
                        write(e, route: route, maps: maps, now: now)
                    }
                    continue
                }
            }
            guard let e = free.take() else {
                noteError("no room for another fast-path entry on this worker (\(capacity))", now: now)
                continue
            }
            _ = uturn_fastpath_zero_counters(maps.counters, counterBase + e)
            entries[Int(e)] = Entry(
                peer: route.peer, client: Self.clientKey(route), peerKey: Self.peerKey(route),
                expiresAt: route.expiresAt, reported: fp_counters())
            channels[route.channel] = e
            count += 1
            write(e, route: route, maps: maps, now: now)
        }
        for (channel, e) in channels where !wanted.contains(channel) {
            add(remove(e, maps: maps), to: &gone)
            channels[channel] = nil
        }
        index[allocation] = channels.isEmpty ? nil : channels
        return gone.packetsToPeer + gone.packetsToClient > 0 ? gone : nil
    }

    /// Allocations whose entries' expiry has come (resync them), and what
    /// every entry relayed since the last read.
    mutating func tick(now: UInt32) -> (due: [AllocationID], relayed: [Relayed]) {
        guard let maps else { return ([], []) }
        var due: [AllocationID] = []
        var relayed: [Relayed] = []
        for (allocation, channels) in index {
            var r = Relayed(allocation: allocation, packetsToPeer: 0, bytesToPeer: 0, packetsToClient: 0, bytesToClient: 0)
            var expired = false
            for (_, e) in channels {
                add(read(e, maps: maps), to: &r)
                expired = expired || entries[Int(e)].expiresAt <= now
            }
            if r.packetsToPeer + r.packetsToClient > 0 { relayed.append(r) }
            if expired { due.append(allocation) }
        }
        return (due, relayed)
    }

    /// Allocations that have entries (a reload re-checks them all).
    var allocations: [AllocationID] { Array(index.keys) }

    // MARK: Internals

    /// What the kernel path handles: every UDP channel whose client side
    /// is one family and whose relay and peer are one family (RFC 6156
    /// mixed families included: the program swaps the IP header).
    private static func offloadable(_ r: OffloadRoute) -> Bool {
        r.fiveTuple.client.ip.family == r.fiveTuple.server.ip.family && r.peer.ip.family == r.relay.address.ip.family
    }

    private static func clientKey(_ r: OffloadRoute) -> fp_client_key {
        var k = fp_client_key()
        k.client_ip = MapAddress(r.fiveTuple.client.ip).words
        k.server_ip = MapAddress(r.fiveTuple.server.ip).words
        k.client_port = r.fiveTuple.client.port.bigEndian
        k.server_port = r.fiveTuple.server.port.bigEndian
        k.channel = r.channel
        k.family = MapAddress.family(r.fiveTuple.client.ip)
        return k
    }

    private static func peerKey(_ r: OffloadRoute) -> fp_peer_key {
        var k = fp_peer_key()
        k.peer_ip = MapAddress(r.peer.ip).words
        k.relay_ip = MapAddress(r.relay.address.ip).words
        k.peer_port = r.peer.port.bigEndian
        k.relay_port = r.relay.address.port.bigEndian
        k.family = MapAddress.family(r.peer.ip)
        return k
    }

    private mutating func write(_ e: UInt32, route r: OffloadRoute, maps: FastPathMaps, now: UInt32) {
        let expires = UInt64(r.expiresAt) &* 1_000_000_000
        let relay = MapAddress(r.relay.address.ip), peer = MapAddress(r.peer.ip)
        let server = MapAddress(r.fiveTuple.server.ip), client = MapAddress(r.fiveTuple.client.ip)
        // Where each direction leaves this host, from the routing table now
        // (re-read whenever the entry is rewritten).
        guard let toPeer = Self.route(from: relay, to: peer, family: r.peer.ip),
            let toClient = Self.route(from: server, to: client, family: r.fiveTuple.client.ip)
        else {
            noteError("no route for channel \(r.channel); it stays in user space", now: now)
            return
        }
        var clientKey = entries[Int(e)].client
        var clientValue = fp_client_value()
        clientValue.relay_ip = relay.words
        clientValue.peer_ip = peer.words
        clientValue.relay_port = r.relay.address.port.bigEndian
        clientValue.peer_port = r.peer.port.bigEndian
        clientValue.family = MapAddress.family(r.peer.ip)
        clientValue.counter = counterBase + e
        clientValue.egress_ifindex = toPeer
        clientValue.expires_ns = expires
        var peerKey = entries[Int(e)].peerKey
        var peerValue = fp_peer_value()
        peerValue.client_ip = client.words
        peerValue.server_ip = server.words
        peerValue.client_port = r.fiveTuple.client.port.bigEndian
        peerValue.server_port = r.fiveTuple.server.port.bigEndian
        peerValue.channel = r.channel
        peerValue.family = MapAddress.family(r.fiveTuple.client.ip)
        peerValue.counter = counterBase + e
        peerValue.egress_ifindex = toClient
        peerValue.expires_ns = expires
        let c = uturn_fastpath_put_client(maps.clients, &clientKey, &clientValue)
        let d = uturn_fastpath_put_peer(maps.peers, &peerKey, &peerValue)
        if c != 0 || d != 0 { noteError("writing a fast-path entry failed (errno \(-min(c, d)))", now: now) }
    }

    /// The interface a datagram from `source` to `destination` leaves by (0:
    /// this host), or nil when the routing table has no answer.
    private static func route(from source: MapAddress, to destination: MapAddress, family: IPAddress) -> UInt32? {
        var ifindex: UInt32 = 0
        var s = source.words, d = destination.words
        let rc = withUnsafePointer(to: &s) { sp in
            withUnsafePointer(to: &d) { dp in
                sp.withMemoryRebound(to: UInt32.self, capacity: 4) { s4 in
                    dp.withMemoryRebound(to: UInt32.self, capacity: 4) { d4 in
                        uturn_fastpath_route(Int32(MapAddress.family(family)), s4, d4, &ifindex)
                    }
                }
            }
        }
        return rc == 0 ? ifindex : nil
    }

    /// Deletes entry `e` from the maps and frees it; returns its last counts.
    private mutating func remove(_ e: UInt32, maps: FastPathMaps) -> fp_counters {
        var client = entries[Int(e)].client
        var peer = entries[Int(e)].peerKey
        _ = uturn_fastpath_delete_client(maps.clients, &client)
        _ = uturn_fastpath_delete_peer(maps.peers, &peer)
        let last = read(e, maps: maps)
        free.give(e)
        count -= 1
        return last
    }

    /// What entry `e` relayed since the last read.
    private mutating func read(_ e: UInt32, maps: FastPathMaps) -> fp_counters {
        var now = fp_counters()
        guard uturn_fastpath_read_counters(maps.counters, counterBase + e, &now) == 0 else { return fp_counters() }
        let before = entries[Int(e)].reported
        entries[Int(e)].reported = now
        return fp_counters(
            packets_to_peer: now.packets_to_peer &- before.packets_to_peer,
            bytes_to_peer: now.bytes_to_peer &- before.bytes_to_peer,
            packets_to_client: now.packets_to_client &- before.packets_to_client,
            bytes_to_client: now.bytes_to_client &- before.bytes_to_client)
    }

    private func add(_ c: fp_counters, to r: inout Relayed) {
        r.packetsToPeer &+= c.packets_to_peer
        r.bytesToPeer &+= c.bytes_to_peer
        r.packetsToClient &+= c.packets_to_client
        r.bytesToClient &+= c.bytes_to_client
    }

    private mutating func noteError(_ what: String, now: UInt32) {
        guard now &- lastErrorLog >= 5 else { return }
        lastErrorLog = now
        log(.warning, "offload: \(what)")
    }
}
