import CURing

/// One rung of the io_uring setup ladder, newest first.
///
/// ``Ring/init(options:)`` tries ``RingOptions/highestRung`` and walks down on
/// `EINVAL` (flag unknown to this kernel) until ``RingOptions/lowestRung``.
/// Every rung also sets `IORING_SETUP_SUBMIT_ALL` and `IORING_SETUP_CQSIZE`.
public enum SetupRung: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    /// No task-running hints: only SUBMIT_ALL and CQSIZE (5.18). A fallback for
    /// odd kernels or sandboxes; deployed kernels get at least ``coopTaskrun``.
    case basic = 0
    /// `COOP_TASKRUN | TASKRUN_FLAG` (5.19).
    case coopTaskrun = 1
    /// `SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG` (6.0).
    case singleIssuerCoopTaskrun = 2
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (6.1). Completions are only posted when
    /// the owning thread enters the kernel to wait or get events, which is what
    /// a run-to-completion worker does anyway.
    case singleIssuerDeferTaskrun = 3

    /// The `IORING_SETUP_*` flags this rung adds to SUBMIT_ALL | CQSIZE.
    public var flags: UInt32 {
        switch self {
        case .basic: 0
        case .coopTaskrun: IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
        case .singleIssuerCoopTaskrun:
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
        case .singleIssuerDeferTaskrun: IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
        }
    }

    /// Whether the ring may only be driven from the thread that created it.
    public var isSingleIssuer: Bool { self >= .singleIssuerCoopTaskrun }

    /// The first Linux release that accepts this rung.
    public var minimumKernel: String {
        switch self {
        case .basic: "5.18"
        case .coopTaskrun: "5.19"
        case .singleIssuerCoopTaskrun: "6.0"
        case .singleIssuerDeferTaskrun: "6.1"
        }
    }

    public var description: String {
        switch self {
        case .basic: "SUBMIT_ALL"
        case .coopTaskrun: "COOP_TASKRUN"
        case .singleIssuerCoopTaskrun: "SINGLE_ISSUER|COOP_TASKRUN"
        case .singleIssuerDeferTaskrun: "SINGLE_ISSUER|DEFER_TASKRUN"
        }
    }

    public static func < (a: SetupRung, b: SetupRung) -> Bool { a.rawValue < b.rawValue }
}

/// How to set up a ``Ring``. The defaults suit one relay worker.
public struct RingOptions: Sendable, Hashable {
    /// SQ entries (the kernel rounds up to a power of two). Bounds how many SQEs
    /// can be prepared between two submits.
    public var submissionEntries: UInt32 = 256
    /// CQ entries (`IORING_SETUP_CQSIZE`; rounded up to a power of two, and at
    /// least `submissionEntries`). Multishot receives produce many CQEs per SQE,
    /// so this is much larger than the SQ.
    public var completionEntries: UInt32 = 4096
    /// The newest rung to try. Lower it to force the older code paths on a new
    /// kernel (for tests, or to work around a kernel bug).
    public var highestRung: SetupRung = .singleIssuerDeferTaskrun
    /// The oldest rung to accept before giving up with ``URingError/setup(_:)``.
    public var lowestRung: SetupRung = .basic
    /// Whether ``KernelFeatures/useMultishotReceive`` may be true. Set to false
    /// to force the single-shot RECVMSG path (the 5.19 path) on a newer kernel.
    public var allowMultishotReceive: Bool = true
    /// Register the ring fd (`io_uring_register_ring_fd`, 5.18) so each
    /// `io_uring_enter` skips the fd table lookup. Failure is ignored.
    public var registerRingFD: Bool = true

    public init() {}

    /// Options that accept exactly `rung` and nothing else.
    public static func forcing(_ rung: SetupRung) -> RingOptions {
        var o = RingOptions()
        o.highestRung = rung
        o.lowestRung = rung
        return o
    }
}
