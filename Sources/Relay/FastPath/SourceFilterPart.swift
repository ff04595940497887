import CFastPath
import STUN
import TURN

/// The worker's side of the kernel source filter: when the per-source
/// limits drop a request that came in on a plain-UDP listener, it blocks
/// that exact client address and port on that listening port in the
/// filter's map, so the kernel drops the source's next datagrams before they
/// are queued (SourceFilterProgram). One bpf() map update per newly blocked
/// source per block: datagrams the socket had queued before the block
/// arrive anyway and are dropped by the limiter again, so `recent`
/// remembers the blocks this worker wrote and skips the update while one is
/// in force. The block lasts until the source's bucket holds a token again
/// (TURNServer.sourceBlockNanoseconds), so it answers what the limiter
/// allows; the kernel lets the source through after that by itself.
///
/// Runs only when a request was dropped for a limit: no allocation (the
/// tables are fixed at init), no reference counting, no lock.
///
/// Invariant: `recent` holds `Self.slots` initialised entries from init
/// until deinit.
struct SourceFilterPart: ~Copyable {
    struct Recent {
        var key = sf_key()
        var until: UInt64 = 0
    }

    static let slots = 256
    /// The filter's map, or -1 when the filter is off.
    let blocked: Int32
    private let recent: UnsafeMutablePointer<Recent>
    /// Map updates that failed (the last errno, for the tick's log line).
    private(set) var failures: UInt64 = 0
    private(set) var lastError: Int32 = 0

    init(maps: SourceFilterMaps?) {
        blocked = maps?.blocked ?? -1
        recent = .allocate(capacity: Self.slots)
        recent.initialize(repeating: Recent(), count: Self.slots)
    }

    deinit { recent.deallocate() }

    var enabled: Bool { blocked >= 0 }

    /// The map key of `client` sending to listening port `listenPort`. An
    /// IPv4-mapped IPv6 client (a dual-stack listener) is keyed as IPv4: the
    /// kernel sees its datagrams as IPv4.
    static func key(client: TransportAddress, listenPort: UInt16) -> sf_key {
        var key = sf_key()
        var ip = client.ip
        if ip.family == .v6 && ip.high == 0 && ip.low >> 32 == 0xFFFF {
            ip = IPAddress(v4: UInt32(truncatingIfNeeded: ip.low))
        }
        let address = MapAddress(ip)
        key.source_ip.0 = address.words.0
        key.source_ip.1 = address.words.1
        key.source_ip.2 = address.words.2
        key.source_ip.3 = address.words.3
        key.source_port = client.port.bigEndian
        key.listen_port = listenPort.bigEndian
        key.family = MapAddress.family(ip)
        return key
    }

    /// Blocks `key` for `nanoseconds` from `now` (CLOCK_MONOTONIC, as
    /// bpf_ktime_get_ns). Returns whether a map update was made (false: a
    /// block of this worker's was still in force, or nanoseconds is 0).
    mutating func block(_ key: sf_key, nanoseconds: UInt64, now: MonotonicTime) -> Bool {
        guard enabled, nanoseconds > 0 else { return false }
        let slot = recent + Self.slot(key)
        if Self.same(slot.pointee.key, key) && slot.pointee.until > now.nanoseconds { return false }
        let until = now.nanoseconds &+ nanoseconds
        var k = key
        let rc = uturn_source_filter_block(blocked, &k, until)
        if rc != 0 {
            failures &+= 1
            lastError = -rc
            return false
        }
        slot.pointee = Recent(key: key, until: until)
        return true
    }

    @inline(__always)
    static func slot(_ k: sf_key) -> Int {
        var h = UInt64(k.source_ip.0) ^ UInt64(k.source_ip.1) << 32
        h ^= (UInt64(k.source_ip.2) ^ UInt64(k.source_ip.3) << 32) &* 0x9E37_79B9_7F4A_7C15
        h ^= UInt64(k.source_port) << 16 | UInt64(k.listen_port)
        h = (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return Int(truncatingIfNeeded: h >> 40) & (slots - 1)
    }

    @inline(__always)
    static func same(_ a: sf_key, _ b: sf_key) -> Bool {
        a.source_ip.0 == b.source_ip.0 && a.source_ip.1 == b.source_ip.1 && a.source_ip.2 == b.source_ip.2
            && a.source_ip.3 == b.source_ip.3 && a.source_port == b.source_port && a.listen_port == b.listen_port
            && a.family == b.family
    }
}
