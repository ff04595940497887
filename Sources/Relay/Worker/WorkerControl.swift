import Synchronization
import TURN
import URing

/// What the engine's controlling thread shares with one worker: the stop
/// request, the waker that interrupts the worker's wait, the worker's inbox
/// (control-plane messages: reloads, connections handed over by other
/// workers) and the counters the worker publishes once a second. The worker
/// reads `stopRequest` and its inbox only when woken or on its tick.
final class WorkerControl: Sendable {
    let index: Int
    /// 0: run; 1: drain (refuse new allocations, stop when none are left or
    /// at `drainDeadline`); 2: stop now.
    let stopRequest = Atomic<Int>(0)
    /// CLOCK_MONOTONIC nanoseconds at which a drain gives up and stops.
    let drainDeadline = Atomic<UInt64>(0)
    /// Set once by the worker thread: nil while starting, then the result.
    let startResult = Mutex<StartResult?>(nil)
    let waker = Mutex<Waker?>(nil)
    let counters = PublishedCounters()
    /// Messages for the worker, taken at its next wake-up (ControlQueue.swift).
    let inbox = ControlQueue<WorkerMessage>(capacity: 1024)

    enum StartResult: Sendable {
        case running
        case failed(String)
    }

    init(index: Int) { self.index = index }

    static let run = 0, drain = 1, stopNow = 2

    func requestStop() {
        stopRequest.store(Self.stopNow, ordering: .releasing)
        waker.withLock { $0?.wake() }
    }

    /// Queues `message` for the worker and wakes it; false when its inbox is full.
    @discardableResult
    func send(_ message: WorkerMessage) -> Bool {
        guard inbox.send(message) else { return false }
        waker.withLock { $0?.wake() }
        return true
    }

    /// Asks for a drain unless a stop is already under way.
    func requestDrain(until deadline: UInt64) {
        drainDeadline.store(deadline, ordering: .relaxed)
        _ = stopRequest.compareExchange(expected: Self.run, desired: Self.drain, ordering: .releasing)
        waker.withLock { $0?.wake() }
    }
}

/// What the control plane (or another worker) asks of a worker.
enum WorkerMessage: Sendable {
    /// A new TURN configuration (users, secrets, peer policy); see `Engine.reload`.
    case configuration(TURNConfiguration)
    /// A new certificate and key for the TLS listeners; connections already
    /// open keep the one they started with.
    case tls(TLSServerContext)
    /// The same for the DTLS listeners; sessions already open keep theirs.
    case dtls(DTLSServerContext)
    /// A client connection whose ConnectionBind names a CONNECTION-ID this
    /// worker issued (RFC 6062), moved here by the worker that accepted it.
    case handoff(StreamHandoff)
    /// An admin API request (list or end sessions); the worker answers
    /// through `request.replies` (Admin/AdminCommand.swift).
    case admin(AdminRequest)
    /// RFC 8016 across workers: a Refresh with this worker's mobility
    /// ticket that another worker received (Worker+Mobility.swift).
    case mobilityMove(HandedMove)
    /// The credential thread looked up `username` (CredentialLookups.swift);
    /// when `found`, the configuration holding it came first in the inbox;
    /// `failed`: the database could not be asked (answered 401 like unknown).
    case lookupDone(username: String, found: Bool, failed: Bool)
}

/// Per-worker counters: the worker keeps plain integers it alone writes
/// (`WorkerCounters`) and copies them here once a second; readers sum over workers.
/// A mutex is fine here: the worker takes it once a second, readers rarely.
final class PublishedCounters: Sendable {
    let values = Mutex<[UInt64]>(Array(repeating: 0, count: WorkerCounters.Field.allCases.count))
    /// Copies the worker's counters in place (no allocation: the array is
    /// uniquely held by the mutex; readers copy it out under the lock).
    func publish(_ c: borrowing WorkerCounters) {
        values.withLock { v in
            for i in 0..<v.count { v[i] = c[WorkerCounters.Field(rawValue: i)!] }
        }
    }
    subscript(_ f: WorkerCounters.Field) -> UInt64 { values.withLock { $0[f.rawValue] } }
}

/// The worker's own counters: plain memory allocated once, written only by
/// its thread (no array, so bumping one costs no uniqueness check or ARC).
struct WorkerCounters: ~Copyable {
    enum Field: Int, CaseIterable, Sendable {
        case packetsFromClients, bytesFromClients, packetsToPeers, bytesToPeers
        case packetsFromPeers, bytesFromPeers, packetsToClients, bytesToClients
        case stunRequests, dropsNoRoute, dropsMalformed, dropsNoSendOp, dropsTruncated, dropsSendError, dropsTooBig
        case completions, batches, sendCalls, datagramsSent, gsoSends, receiveRearms, enobufs, sqFull
        case groTrains, groDatagrams
        case refused400, refused401, refused403, refused437, refused438, refused441, refused486, refused508
        case refusedOther, challenges
        case streamAccepted, streamRefused, streamClosed, streamTimeouts, streamDropsFull, tlsFailures
        case bytesFromStreams, bytesToStreams
        case allocationsCreated, allocationsDeleted, allocationsExpired, allocationsMoved, allocationsMovedAcross
        case offloadPacketsToPeers, offloadBytesToPeers, offloadPacketsToClients, offloadBytesToClients
        case offloadEntriesWritten, offloadEntriesDeleted
        case rateLimitedUnauthenticated, rateLimitedCredentials, rateLimitedMalformed, rateLimitedBinding
        case kernelSourceBlocks, kernelSourceBlockFailures
        case policyDropsBps, policyDropsUserBps, policyDropsCapacity, policyDropsPps, policyRefusedPeers
        case policyPausedToPeer, policyPausedToClient
        case dtlsAccepted, dtlsRefused, dtlsClosed, dtlsTimeouts, dtlsFailures, dtlsCookies, dtlsReplaced
        case lookupsFound, lookupsUnknown, lookupsFailed, lookupsTimedOut, lookupsRefused
    }
    private let storage: UnsafeMutablePointer<UInt64>

    init() {
        storage = .allocate(capacity: Field.allCases.count)
        storage.initialize(repeating: 0, count: Field.allCases.count)
    }

    deinit { storage.deallocate() }

    subscript(_ f: Field) -> UInt64 { storage[f.rawValue] }

    @inline(__always)
    mutating func add(_ f: Field, _ n: Int = 1) { storage[f.rawValue] &+= UInt64(n) }

    /// Where a part of the worker counts (see `CounterView`).
    var view: CounterView { CounterView(storage: storage) }

    /// Sets a counter kept elsewhere (the reactor's SQ-full count).
    mutating func set(_ f: Field, _ n: Int) { storage[f.rawValue] = UInt64(n) }
}

/// A part's handle on its worker's counters, so a part counts what it does
/// without being handed the counters on every call.
///
/// Invariant: every view is made from the worker's own `WorkerCounters` and
/// held by a part of the same worker, on the same thread; the worker
/// outlives its parts' use of it (parts count nothing in their deinit).
struct CounterView {
    let storage: UnsafeMutablePointer<UInt64>

    @inline(__always)
    func add(_ f: WorkerCounters.Field, _ n: Int = 1) { storage[f.rawValue] &+= UInt64(n) }
}
