import CURing

#if canImport(Glibc)
import Glibc
#endif

/// One io_uring, owned: created by `init`, torn down by `deinit`.
///
/// ## Threading
/// A ring is driven by one thread. With ``SetupRung/isSingleIssuer`` rungs the
/// kernel enforces this: create the ring *on* the worker thread that will
/// submit to it. The only cross-thread entry point is ``Waker``.
///
/// ## The loop
/// ```swift
/// var ring = try Ring(options: options)
/// while running {
///     try ring.submitAndWait(minComplete: 1)      // submit prepared SQEs, sleep
///     ring.forEachCompletion { cqe in ... }       // or reapCompletions(into:)
///     // re-arm receives that ended, recycle buffers, publish, prepare sends
/// }
/// ```
/// `prepare*` methods return `false` when the SQ is full: submit and retry.
///
/// ## Memory
/// Nothing on the submit / reap path allocates or retains: the ring state sits
/// behind one pointer allocated at setup, CQEs are copied out as 16-byte
/// values, and bodies are non-escaping closures.
public struct Ring: ~Copyable {
    /// liburing's ring state. Allocated once so its address is stable.
    @usableFromInline let raw: UnsafeMutablePointer<io_uring>
    /// One kernel timespec per SQ slot, for ring-owned timeouts: the kernel
    /// copies the timespec while it consumes the SQE, so a slot is free again
    /// by the time the same SQ index comes round.
    @usableFromInline let timespecs: UnsafeMutablePointer<__kernel_timespec>
    /// Target of the armed eventfd read.
    @usableFromInline let wakeBuffer: UnsafeMutablePointer<UInt64>
    @usableFromInline var waker: Waker?
    @usableFromInline var wakeFD: Int32 = -1
    @usableFromInline var wakeArmed = false
    @usableFromInline let mustGetEvents: Bool
    @usableFromInline let enterFD: Int32
    @usableFromInline let enterFlags: UInt32

    /// The rung of the setup ladder the kernel accepted.
    public let setupRung: SetupRung
    /// `io_uring_params.features` (`IORING_FEAT_*`) as the kernel reported them.
    public let featureFlags: UInt32
    /// Actual SQ and CQ sizes after the kernel's rounding.
    public let submissionEntries: UInt32
    public let completionEntries: UInt32
    /// The options the ring was created with.
    public let options: RingOptions

    /// The ring's file descriptor (for `IORING_OP_MSG_RING` from another ring).
    public var fileDescriptor: Int32 { raw.pointee.ring_fd }

    /// Sets up a ring, walking the ``SetupRung`` ladder from
    /// `options.highestRung` down to `options.lowestRung` while the kernel
    /// answers EINVAL. Any other errno ends the walk: see
    /// ``URingError/explainUnavailable(_:)``.
    ///
    /// The corresponding C function is `io_uring_queue_init_params`.
    public init(options: RingOptions = RingOptions()) throws(URingError) {
        guard options.lowestRung <= options.highestRung else {
            throw .invalid("lowestRung \(options.lowestRung) is above highestRung \(options.highestRung)")
        }
        let raw = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        raw.initialize(to: io_uring())
        var rung = options.highestRung
        var params = io_uring_params()
        while true {
            params = io_uring_params()
            params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | rung.flags
            params.cq_entries = max(options.completionEntries, options.submissionEntries)
            let r = io_uring_queue_init_params(options.submissionEntries, raw, &params)
            if r == 0 { break }
            if r == -EINVAL && rung > options.lowestRung {
                rung = SetupRung(rawValue: rung.rawValue - 1)!
                continue
            }
            raw.deallocate()
            throw .setup(Errno(rawValue: -r))
        }
        self.raw = raw
        self.setupRung = rung
        self.options = options
        self.featureFlags = params.features
        self.submissionEntries = raw.pointee.sq.ring_entries
        self.completionEntries = raw.pointee.cq.ring_entries
        self.mustGetEvents = rung == .singleIssuerDeferTaskrun
        // Map SQ slot i to SQE i once, so submitting is a tail store (liburing
        // 2.3 does this too; doing it here makes it independent of the version).
        let sqArray = raw.pointee.sq.array!
        for i in 0..<Int(raw.pointee.sq.ring_entries) { sqArray[i] = UInt32(i) }

        var enterFD = raw.pointee.ring_fd
        var enterFlags: UInt32 = 0
        if options.registerRingFD, io_uring_register_ring_fd(raw) == 1 {
            enterFD = raw.pointee.enter_ring_fd
            enterFlags = IORING_ENTER_REGISTERED_RING
        }
        self.enterFD = enterFD
        self.enterFlags = enterFlags
        timespecs = .allocate(capacity: Int(raw.pointee.sq.ring_entries))
        timespecs.initialize(repeating: __kernel_timespec(), count: Int(raw.pointee.sq.ring_entries))
        wakeBuffer = .allocate(capacity: 1)
        wakeBuffer.initialize(to: 0)
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deallocate()
        timespecs.deallocate()
        // The eventfd read was cancelled by the ring's teardown; the buffer is
        // no longer a target. The eventfd itself lives on in `waker`.
        wakeBuffer.deallocate()
    }

    /// Whether the kernel reported `flag` (`IORING_FEAT_*`) at setup.
    @inlinable
    public func hasFeature(_ flag: UInt32) -> Bool { featureFlags & flag == flag }

    // MARK: Waking

    /// Returns the ring's ``Waker``, creating its eventfd and arming a read on
    /// it the first time. The read is re-armed by the ring after each wake, on
    /// the next submit. Wake CQEs reach your reaper with kind ``UserData/Kind/wake``.
    public mutating func makeWaker() throws(URingError) -> Waker {
        if let waker { return waker }
        let w = try Waker()
        waker = w
        wakeFD = w.fileDescriptor
        _ = armWakeIfNeeded()
        return w
    }

    @usableFromInline @inline(__always)
    mutating func armWakeIfNeeded() -> Bool {
        guard wakeFD >= 0, !wakeArmed else { return true }
        guard let sqe = io_uring_get_sqe(raw) else { return false }
        io_uring_prep_read(sqe, wakeFD, wakeBuffer, 8, 0)
        io_uring_sqe_set_data64(sqe, UserData(kind: .wake, slot: 0).rawValue)
        wakeArmed = true
        return true
    }

    // MARK: Submitting

    /// SQEs prepared and not yet submitted.
    @inlinable
    public var pendingSubmissions: Int {
        Int(raw.pointee.sq.sqe_tail &- raw.pointee.sq.sqe_head)
    }

    /// Free SQ slots for `prepare*` calls.
    @inlinable
    public var submissionSpaceLeft: Int { Int(io_uring_sq_space_left(raw)) }

    /// CQEs waiting to be reaped.
    @inlinable
    public var completionsReady: Int { Int(io_uring_cq_ready(raw)) }

    /// Submits prepared SQEs without waiting, and (with DEFER_TASKRUN or
    /// pending task work) lets the kernel post completions that are ready.
    /// Returns the number of SQEs the kernel consumed.
    ///
    /// EINTR is retried. EAGAIN (kernel short of memory) and EBUSY (CQ overflow
    /// backlog) return 0 with the SQEs still queued: reap completions, then call
    /// again. The corresponding C function is `io_uring_enter`.
    @inlinable @discardableResult
    public mutating func submit() throws(URingError) -> Int {
        try enter(minComplete: 0, timeout: nil)
    }

    /// Submits prepared SQEs and sleeps until at least `minComplete` CQEs are
    /// ready, `timeout` passes, a signal arrives, or the ``Waker`` fires.
    /// Returns the number of SQEs the kernel consumed.
    ///
    /// Returns early (never throws) on ETIME (timeout), EINTR (signal; check
    /// your shutdown flag), EAGAIN and EBUSY (CQ overflow backlog under
    /// `IORING_FEAT_NODROP`: the CQ is full, so reap and call again). Prepared
    /// SQEs that were not consumed stay queued for the next call.
    ///
    /// The corresponding C function is `io_uring_enter2` with
    /// `IORING_ENTER_GETEVENTS` (and `IORING_ENTER_EXT_ARG` for the timeout).
    @inlinable @discardableResult
    public mutating func submitAndWait(minComplete: Int = 1, timeout: Duration? = nil) throws(URingError) -> Int {
        try enter(minComplete: UInt32(clamping: minComplete), timeout: timeout)
    }

    @usableFromInline
    mutating func enter(minComplete: UInt32, timeout: Duration?) throws(URingError) -> Int {
        _ = armWakeIfNeeded()
        // Publish the SQ tail. Only this thread writes it and the kernel reads
        // it inside io_uring_enter (no SQPOLL), so a plain store is enough.
        let tail = raw.pointee.sq.sqe_tail
        if raw.pointee.sq.sqe_head != tail {
            raw.pointee.sq.sqe_head = tail
            raw.pointee.sq.ktail.pointee = tail
        }
        let toSubmit = tail &- raw.pointee.sq.khead.pointee
        var flags = enterFlags
        let sqFlags = raw.pointee.sq.kflags.pointee
        if minComplete > 0 || mustGetEvents
            || sqFlags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN) != 0
        {
            flags |= IORING_ENTER_GETEVENTS
        } else if toSubmit == 0 {
            return 0
        }
        var result: Int32
        if let timeout, minComplete > 0 {
            let (seconds, attoseconds) = timeout.components
            var ts = __kernel_timespec(
                tv_sec: max(0, seconds),
                tv_nsec: seconds < 0 ? 0 : attoseconds / 1_000_000_000
            )
            result = withUnsafeMutablePointer(to: &ts) { tsp in
                var arg = io_uring_getevents_arg(
                    sigmask: 0, sigmask_sz: 8, pad: 0, ts: UInt64(UInt(bitPattern: tsp)))
                return withUnsafeMutablePointer(to: &arg) { argp in
                    io_uring_enter2(
                        UInt32(bitPattern: enterFD), toSubmit, minComplete, flags | IORING_ENTER_EXT_ARG,
                        UnsafeMutableRawPointer(argp).assumingMemoryBound(to: sigset_t.self),
                        MemoryLayout<io_uring_getevents_arg>.size)
                }
            }
        } else {
            repeat {
                result = io_uring_enter(UInt32(bitPattern: enterFD), toSubmit, minComplete, flags, nil)
            } while result == -EINTR && minComplete == 0
        }
        if result >= 0 { return Int(result) }
        switch -result {
        case EINTR, EAGAIN, EBUSY, ETIME:
            return 0
        case EBADF, EFAULT:
            preconditionFailure("io_uring_enter: \(Errno(rawValue: -result)) means a corrupted ring")
        default:
            throw .enter(Errno(rawValue: -result))
        }
    }

    // MARK: Reaping

    /// Calls `body` for every CQE that is ready, in order, then frees all their
    /// CQ slots with one head store. Returns how many were visited. Does not
    /// enter the kernel: call ``submitAndWait(minComplete:timeout:)`` or
    /// ``submit()`` first (with DEFER_TASKRUN completions are only posted then).
    ///
    /// `body` cannot touch the ring (it is borrowed for the walk). To re-arm or
    /// send while handling completions, use ``reapCompletions(into:)`` and
    /// walk the copies instead.
    ///
    /// If `body` throws, the CQEs before it and the one that threw are consumed.
    @inlinable @discardableResult
    public mutating func forEachCompletion<E: Error>(_ body: (Completion) throws(E) -> Void) throws(E) -> Int {
        let ready = io_uring_cq_ready(raw)
        if ready == 0 { return 0 }
        let cqes = raw.pointee.cq.cqes!
        let mask = raw.pointee.cq.ring_mask
        let head = raw.pointee.cq.khead.pointee
        var seen: UInt32 = 0
        defer { io_uring_cq_advance(raw, seen) }
        while seen < ready {
            let cqe = cqes[Int((head &+ seen) & mask)]
            seen &+= 1
            let completion = Completion(userData: UserData(rawValue: cqe.user_data), result: cqe.res, flags: cqe.flags)
            if completion.userData.kind == .wake { wakeArmed = false }
            try body(completion)
        }
        return Int(seen)
    }

    /// Copies up to `buffer.count` ready CQEs into `buffer`, frees their CQ
    /// slots with one head store, and returns how many were copied. The ring is
    /// free to use while you walk the copies (re-arm, recycle, send).
    @inlinable
    public mutating func reapCompletions(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        let ready = min(io_uring_cq_ready(raw), UInt32(clamping: buffer.count))
        if ready == 0 { return 0 }
        let cqes = raw.pointee.cq.cqes!
        let mask = raw.pointee.cq.ring_mask
        let head = raw.pointee.cq.khead.pointee
        let out = buffer.baseAddress!
        for i in 0..<Int(ready) {
            let cqe = cqes[Int((head &+ UInt32(truncatingIfNeeded: i)) & mask)]
            let userData = UserData(rawValue: cqe.user_data)
            if userData.kind == .wake { wakeArmed = false }
            (out + i).initialize(to: Completion(userData: userData, result: cqe.res, flags: cqe.flags))
        }
        io_uring_cq_advance(raw, ready)
        return Int(ready)
    }
}
