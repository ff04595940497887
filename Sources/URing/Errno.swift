#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number, as returned in `errno` or negated in a CQE's `res`.
///
/// Only the values the ring and socket code treat specially have names; every
/// other value still round-trips through `rawValue` and prints with `strerror`.
public struct Errno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32

    @inlinable
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    @inlinable
    public static var current: Errno { Errno(rawValue: errno) }

    public static var interrupted: Errno { Errno(rawValue: EINTR) }
    public static var wouldBlock: Errno { Errno(rawValue: EAGAIN) }
    public static var busy: Errno { Errno(rawValue: EBUSY) }
    public static var invalidArgument: Errno { Errno(rawValue: EINVAL) }
    public static var notPermitted: Errno { Errno(rawValue: EPERM) }
    public static var noSystemCall: Errno { Errno(rawValue: ENOSYS) }
    public static var noMemory: Errno { Errno(rawValue: ENOMEM) }
    public static var noBuffers: Errno { Errno(rawValue: ENOBUFS) }
    public static var canceled: Errno { Errno(rawValue: ECANCELED) }
    public static var timedOut: Errno { Errno(rawValue: ETIME) }
    public static var notFound: Errno { Errno(rawValue: ENOENT) }
    public static var alreadyInProgress: Errno { Errno(rawValue: EALREADY) }
    public static var badFileDescriptor: Errno { Errno(rawValue: EBADF) }
    public static var badAddress: Errno { Errno(rawValue: EFAULT) }
    public static var messageTooLong: Errno { Errno(rawValue: EMSGSIZE) }
    public static var ioError: Errno { Errno(rawValue: EIO) }
    public static var protocolNotAvailable: Errno { Errno(rawValue: ENOPROTOOPT) }
    public static var connectionRefused: Errno { Errno(rawValue: ECONNREFUSED) }
    public static var addressInUse: Errno { Errno(rawValue: EADDRINUSE) }
    public static var notSupported: Errno { Errno(rawValue: EOPNOTSUPP) }

    /// `strerror` text followed by the symbolic value, e.g. "No buffer space available (errno 105)".
    public var description: String {
        let text = strerror(rawValue).map { String(cString: $0) } ?? "unknown error"
        return "\(text) (errno \(rawValue))"
    }
}

/// An error from the io_uring or socket layer: which call failed, and why.
///
/// The case names the operation; `errno` is the kernel's answer. Use
/// ``URingError/explanation`` (or ``URingError/explainUnavailable(_:)``) to turn
/// a setup failure into something an operator can act on.
public enum URingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `io_uring_setup` failed on every rung of the ladder (the last rung's errno).
    case setup(Errno)
    /// `io_uring_enter` failed (other than EINTR/EAGAIN/EBUSY/ETIME, which are handled).
    case enter(Errno)
    /// `io_uring_register` failed; `call` names the liburing function.
    case register(call: String, Errno)
    /// Allocation (mmap) of ring-owned memory failed.
    case memory(call: String, Errno)
    /// A socket call failed; `call` names it (`socket`, `bind`, `setsockopt(SO_REUSEPORT)`, ...).
    case socket(call: String, Errno)
    /// An `eventfd` call failed.
    case eventfd(call: String, Errno)
    /// The request was not valid for this ring or kernel (for example a buffer
    /// count that is not a power of two).
    case invalid(String)

    /// The kernel's errno, or EINVAL for ``invalid(_:)``.
    public var errno: Errno {
        switch self {
        case .setup(let e), .enter(let e): e
        case .register(_, let e), .memory(_, let e), .socket(_, let e), .eventfd(_, let e): e
        case .invalid: .invalidArgument
        }
    }

    /// The name of the failing call.
    public var call: String {
        switch self {
        case .setup: "io_uring_setup"
        case .enter: "io_uring_enter"
        case .register(let c, _), .memory(let c, _), .socket(let c, _), .eventfd(let c, _): c
        case .invalid: "argument check"
        }
    }

    public var description: String {
        switch self {
        case .invalid(let why): "invalid request: \(why)"
        case .setup(let e): "io_uring_setup: \(e). \(URingError.explainUnavailable(e))"
        default: "\(call): \(errno)"
        }
    }

    /// Explains, in operator terms, why io_uring could not be set up.
    ///
    /// Meant for the daemon's startup log and for tests that skip: the text says
    /// what to change (sysctl, seccomp profile, kernel, memlock limit).
    public static func explainUnavailable(_ errno: Errno) -> String {
        switch errno.rawValue {
        case EPERM:
            return "io_uring is disabled by sysctl kernel.io_uring_disabled or a seccomp profile "
                + "(Docker's default blocks it: run with --security-opt seccomp=unconfined or a profile "
                + "that allows io_uring_setup/io_uring_enter/io_uring_register)"
        case ENOSYS:
            return "kernel built without io_uring (need Linux 5.19+)"
        case ENOMEM:
            return "locked memory limit too low on kernels before 5.12 (raise LimitMEMLOCK / ulimit -l)"
        case EINVAL:
            return "the kernel rejected every setup flag combination (need Linux 5.19+ for COOP_TASKRUN and "
                + "provided buffer rings)"
        case EMFILE, ENFILE:
            return "out of file descriptors (raise LimitNOFILE / ulimit -n)"
        default:
            return "io_uring unavailable: \(errno)"
        }
    }

    /// ``explainUnavailable(_:)`` applied to this error's errno.
    public var explanation: String { URingError.explainUnavailable(errno) }
}
