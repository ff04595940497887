import STUN
import TURN

// On-miss user lookups (CredentialLookups.swift): a signed request from a
// name the credential store does not hold waits, parked, while the
// credential thread asks the database, and is then answered through the
// normal request path. Control path only: STUN requests, the inbox, the tick.
extension Worker {
    /// How long a parked request waits for the database before its 401.
    static let lookupTimeout: UInt64 = 2_000_000_000
    /// How long a name found unknown is answered 401 without a new lookup.
    static let unknownUserMemory: UInt64 = 5_000_000_000

    /// Parks `payload` when it should wait for a lookup; true when it did
    /// (or it is a retransmission of a request already parked).
    /// UDP clients only: a stream or DTLS client is answered as before.
    mutating func parkForLookup(
        _ payload: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, reply: ClientReply, now: MonotonicTime
    ) -> Bool {
        guard !rerunning, case .datagram(let fd) = reply,
            let name = turn.usernameToLookUp(UnsafeRawBufferPointer(payload)),
            !unknownUsers.contains(name, now: now.nanoseconds)
        else { return false }
        switch pending.park(
            UnsafeRawBufferPointer(payload), username: name, fiveTuple: fiveTuple, listenerFD: fd, now: now.nanoseconds)
        {
        case .parked(let slot, let askLookup):
            if askLookup && !lookups.request(worker: index, username: name) {
                pending.release(slot)
                counters.add(.lookupsRefused)
                return false
            }
            return true
        case .duplicate:
            return true
        case .full, .tooLarge:
            counters.add(.lookupsRefused)
            return false
        }
    }

    /// The credential thread's answer: the parked requests go through the
    /// normal path (accepted now, or 401 when the name is still unknown).
    mutating func lookupDone(username: String, found: Bool, failed: Bool, now: MonotonicTime) {
        let known = found && turn.configuration.credentials.hasUser(username)
        if !known {
            unknownUsers.insert(username, until: now.nanoseconds &+ Self.unknownUserMemory, now: now.nanoseconds)
        }
        var any = false
        while let slot = pending.next(for: username) {
            any = true
            rerunParked(slot, now: now)
        }
        if any { counters.add(known ? .lookupsFound : failed ? .lookupsFailed : .lookupsUnknown) }
    }

    /// On the tick: requests whose lookup got no answer in time (database
    /// down or slow) are answered 401 (the name is then remembered as unknown a while).
    mutating func expireLookups(now: MonotonicTime) {
        while let slot = pending.nextExpired(now: now.nanoseconds, timeout: Self.lookupTimeout) {
            let name = pending.entry(slot).username
            unknownUsers.insert(name, until: now.nanoseconds &+ Self.unknownUserMemory, now: now.nanoseconds)
            counters.add(.lookupsTimedOut)
            rerunParked(slot, now: now)
        }
    }

    private mutating func rerunParked(_ slot: Int, now: MonotonicTime) {
        let entry = pending.entry(slot)
        rerunning = true
        handleSTUN(
            pending.request(slot), fiveTuple: entry.fiveTuple, reply: .datagram(entry.listenerFD), buffer: nil, now: now)
        rerunning = false
        pending.release(slot)
    }
}
