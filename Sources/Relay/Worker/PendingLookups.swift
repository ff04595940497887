import Glibc
import STUN
import TURN

/// Requests parked while the credential thread looks up their USERNAME
/// (`CredentialLookups`): a fixed number of slots, each with room for one
/// request's bytes, allocated when the worker starts. Used on the control
/// path only (STUN requests from a name the last snapshot did not hold,
/// the answer from the inbox, the 1 s tick), never per data packet.
///
/// Invariant for the unsafe storage: slot `i` owns bytes
/// `[i * slotBytes, (i + 1) * slotBytes)` of `storage`; only the first
/// `entries[i].length` of them are meaningful, and only while
/// `entries[i].inUse`.
struct PendingLookups: ~Copyable {
    /// Room for one request; a larger one is not parked (answered as before).
    static let slotBytes = 1500
    struct Entry {
        var inUse = false
        var username = ""
        var fiveTuple = FiveTuple(
            client: TransportAddress(ip: IPAddress(v4: 0), port: 0),
            server: TransportAddress(ip: IPAddress(v4: 0), port: 0))
        /// The UDP listener socket the request came in on (the answer goes out on it).
        var listenerFD: Int32 = -1
        var length = 0
        /// CLOCK_MONOTONIC nanoseconds when parked.
        var parkedAt: UInt64 = 0
    }

    enum ParkResult: Equatable {
        /// Parked in `slot`; `askLookup`: no other request waits for this
        /// name, so a lookup must be sent (else one is already under way).
        case parked(slot: Int, askLookup: Bool)
        /// The same request (client and transaction ID) is already parked:
        /// a retransmission; the first copy's answer serves it.
        case duplicate
        /// No free slot, or the request is too large: answer it as before.
        case full, tooLarge
    }

    let capacity: Int
    private let storage: UnsafeMutableRawPointer
    private var entries: [Entry]
    private(set) var count = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = .allocate(byteCount: capacity * Self.slotBytes, alignment: 8)
        entries = Array(repeating: Entry(), count: capacity)
    }

    deinit { storage.deallocate() }

    mutating func park(
        _ request: UnsafeRawBufferPointer, username: String, fiveTuple: FiveTuple, listenerFD: Int32, now: UInt64
    ) -> ParkResult {
        guard request.count <= Self.slotBytes, request.count >= 20 else { return .tooLarge }
        var free: Int?
        var askLookup = true
        for i in 0..<capacity {
            guard entries[i].inUse else {
                if free == nil { free = i }
                continue
            }
            if entries[i].username == username { askLookup = false }
            // STUN bytes 8..<20 are the transaction ID.
            if entries[i].fiveTuple == fiveTuple, entries[i].length == request.count,
                memcmp(storage + i * Self.slotBytes + 8, request.baseAddress! + 8, 12) == 0
            {
                return .duplicate
            }
        }
        guard let slot = free else { return .full }
        storage.advanced(by: slot * Self.slotBytes).copyMemory(from: request.baseAddress!, byteCount: request.count)
        entries[slot] = Entry(
            inUse: true, username: username, fiveTuple: fiveTuple, listenerFD: listenerFD, length: request.count,
            parkedAt: now)
        count += 1
        return .parked(slot: slot, askLookup: askLookup)
    }

    /// A parked request waiting for `username`, or nil when none is left.
    func next(for username: String) -> Int? {
        guard count > 0 else { return nil }
        return (0..<capacity).first { entries[$0].inUse && entries[$0].username == username }
    }

    /// A request parked at or before `now - timeout`, or nil.
    func nextExpired(now: UInt64, timeout: UInt64) -> Int? {
        guard count > 0 else { return nil }
        return (0..<capacity).first {
            entries[$0].inUse && now >= entries[$0].parkedAt && now - entries[$0].parkedAt >= timeout
        }
    }

    func entry(_ slot: Int) -> Entry { entries[slot] }

    /// The parked request's bytes (valid until `release(slot)`).
    func request(_ slot: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage + slot * Self.slotBytes, count: entries[slot].length)
    }

    mutating func release(_ slot: Int) {
        guard entries[slot].inUse else { return }
        entries[slot].inUse = false
        count -= 1
    }
}

/// Names a lookup found unknown, remembered a few seconds so a client
/// retrying with an unknown name costs no database query per request.
/// Fixed size; when full, the entry that expires first is replaced.
struct UnknownUsers {
    private var names: [String]
    private var until: [UInt64]

    init(capacity: Int) {
        names = Array(repeating: "", count: capacity)
        until = Array(repeating: 0, count: capacity)
    }

    func contains(_ name: String, now: UInt64) -> Bool {
        for i in 0..<names.count where until[i] > now && names[i] == name { return true }
        return false
    }

    mutating func insert(_ name: String, until expiry: UInt64, now: UInt64) {
        var victim = 0
        for i in 0..<names.count {
            if names[i] == name || until[i] <= now {
                victim = i
                break
            }
            if until[i] < until[victim] { victim = i }
        }
        names[victim] = name
        until[victim] = expiry
    }
}
