import CFastPath
import STUN
import TURN

/// The worker's side of the kernel source filter: when the per-source
/// limits drop requests from a client address and port that came in on a
/// plain-UDP listener, it blocks that exact address and port on that
/// listening port in the filter's map, so the kernel drops the source's
/// next datagrams before they are queued (SourceFilterProgram). The block
/// lasts until the source's bucket holds a token again
/// (TURNServer.sourceBlockNanoseconds), so it answers what the limiter
/// allows; the kernel lets the source through after that by itself.
///
/// One bpf() map update per blocked source per block, and only for a
/// 5-tuple dropped twice: the first drop is only noted in `recent`, the
/// second (within the time the block would last) writes the block. A
/// flood that never repeats a 5-tuple (spoofed addresses, or one address
/// rotating its ports) would otherwise cost a syscall per datagram and
/// block nothing that comes again. `recent` also remembers the blocks this
/// worker wrote, so the datagrams the socket had queued before a block
/// (dropped by the limiter again) make no second update.
///
/// A block has a scope (`Scope`): a source whose requests the limits drop
/// loses everything; a source that sends datagrams no one answers
/// (ChannelData with no allocation, unparsable bytes) loses only what does
/// not start with a STUN header, so its requests still reach the worker.
/// When such a 5-tuple gets an allocation, the worker lifts its block
/// (`unblock`).
///
/// Runs only when a datagram was dropped for a limit, and once per new
/// allocation: no allocation (the table is fixed at init), no reference
/// counting, no lock.
///
/// Invariant: `recent` holds `Self.slots` initialised entries from init
/// until deinit.
struct SourceFilterPart: ~Copyable {
    /// What a block drops (the filter's `enum sf_scope`).
    enum Scope: UInt32 {
        /// Every datagram of the 5-tuple: its requests are over the limits.
        case all = 0  // SF_SCOPE_ALL
        /// Datagrams that do not start with a STUN header
        /// (`startsWithSTUNHeader`): it sends what gets no answer.
        case notSTUN = 1  // SF_SCOPE_NOT_STUN

        /// Whether a block of this scope drops what one of `other` would.
        func covers(_ other: Scope) -> Bool { self == .all || other == .notSTUN }
    }

    struct Recent {
        var key = sf_key()
        /// A block this worker wrote ends then (0: none written).
        var until: UInt64 = 0
        /// What that block drops.
        var scope = Scope.all
        /// The first drop of `key` not yet followed by a block.
        var seen: UInt64 = 0
    }

    /// What a drop leads to (`decide`).
    enum Decision: Equatable {
        /// A block this worker wrote for the key is in force: nothing to do.
        case inForce
        /// The first drop of this key: noted, not blocked yet.
        case noted
        /// Block it until this time.
        case block(until: UInt64)
    }

    static let slots = 256
    /// The filter's map, or -1 when the filter is off.
    let blocked: Int32
    private let recent: UnsafeMutablePointer<Recent>
    /// Map updates that failed (counted in uturn_rate_limited_kernel_blocks_total{result="failed"}).
    private(set) var failures: UInt64 = 0
    /// The latest end of any block this worker wrote (0: none yet). Past it
    /// no block of this worker is in force, and `unblock` has nothing to do.
    private(set) var latestUntil: UInt64 = 0

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

    /// What a drop from `key` at `now` leads to, the block lasting
    /// `nanoseconds` (> 0) and dropping `scope`; notes it in `recent`. A
    /// block in force that drops less (a `.notSTUN` block when requests are
    /// now dropped too) does not count as in force.
    mutating func decide(_ key: sf_key, nanoseconds: UInt64, scope: Scope = .all, now: MonotonicTime) -> Decision {
        let slot = recent + Self.slot(key)
        let t = now.nanoseconds
        if Self.same(slot.pointee.key, key) {
            if slot.pointee.until > t && slot.pointee.scope.covers(scope) { return .inForce }
            if slot.pointee.seen != 0 && t &- slot.pointee.seen <= SourceFilterPart.repeatWindow {
                return .block(until: t &+ nanoseconds)
            }
        }
        slot.pointee = Recent(key: key, until: 0, scope: .all, seen: t)
        return .noted
    }

    /// A second drop this soon after the first blocks the 5-tuple (the
    /// longest block: a source at the slowest refill still repeats in it).
    static let repeatWindow: UInt64 = 1_000_000_000

    /// Blocks `key` for `nanoseconds` from `now` (CLOCK_MONOTONIC, as
    /// bpf_ktime_get_ns), dropping `scope`, if `decide` says so. Returns
    /// whether a map update was made. A block replaces the key's earlier one
    /// whole (a `.notSTUN` block written over an `.all` one this worker no
    /// longer remembers lets requests through again, where the limiter
    /// still drops them, until the next block).
    mutating func block(_ key: sf_key, nanoseconds: UInt64, scope: Scope = .all, now: MonotonicTime) -> Bool {
        guard enabled, nanoseconds > 0 else { return false }
        guard case .block(let until) = decide(key, nanoseconds: nanoseconds, scope: scope, now: now) else {
            return false
        }
        var k = key
        let rc = uturn_source_filter_block(blocked, &k, until, scope.rawValue)
        if rc != 0 {
            failures &+= 1
            return false
        }
        recent[Self.slot(key)] = Recent(key: key, until: until, scope: scope, seen: 0)
        latestUntil = max(latestUntil, until)
        return true
    }

    /// Lifts any block of `key` (an allocation was just made or moved
    /// there: its traffic is never limited). While a block this worker wrote
    /// may be in force, that is one bpf() map delete whether or not `key`
    /// is blocked (`recent` may have forgotten it); otherwise nothing. A
    /// 5-tuple's datagrams reach one worker's listener (SO_REUSEPORT), so
    /// only that worker blocks it, and that worker sees its requests.
    /// Returns false if the delete failed.
    mutating func unblock(_ key: sf_key, now: MonotonicTime) -> Bool {
        guard enabled, now.nanoseconds < latestUntil else { return true }
        let slot = recent + Self.slot(key)
        if Self.same(slot.pointee.key, key) { slot.pointee = Recent() }
        var k = key
        guard uturn_source_filter_unblock(blocked, &k) == 0 else {
            failures &+= 1
            return false
        }
        return true
    }

    /// Whether `datagram` starts with what could be a STUN header: 20 bytes
    /// or more, the two top bits clear, the magic cookie in bytes 4-7. The
    /// filter's `starts_with_stun_header` is the same test; a `.notSTUN`
    /// block drops exactly the datagrams for which this is false.
    @inline(__always)
    static func startsWithSTUNHeader(_ datagram: UnsafeRawBufferPointer) -> Bool {
        datagram.count >= STUNHeader.size && datagram[0] & 0xC0 == 0
            && datagram.loadUnaligned(fromByteOffset: 4, as: UInt32.self) == STUNHeader.magicCookie.bigEndian
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
