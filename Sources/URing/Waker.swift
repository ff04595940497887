import CURing

#if canImport(Glibc)
import Glibc
#endif

/// Wakes a ``Ring`` blocked in ``Ring/submitAndWait(minComplete:timeout:)``
/// from any thread.
///
/// Get one from ``Ring/makeWaker()``. It owns a (blocking) eventfd; the ring
/// keeps an io_uring read armed on it, so ``wake()`` makes that read complete
/// with a CQE of kind ``UserData/Kind/wake``, which ends the wait. Wakes
/// coalesce: many `wake()` calls before the ring reaps give one CQE.
///
/// A class so that the eventfd stays open while any thread still holds the
/// waker, even after the ring is gone (a write to a closed, reused fd number
/// would land in some other file). It is never touched on the packet path.
public final class Waker: Sendable {
    /// The eventfd. Valid for the waker's lifetime.
    public let fileDescriptor: Int32

    /// A waker with no ring: the owner polls ``fileDescriptor`` itself (the
    /// epoll backend) and reads the counter when it is readable.
    public init() throws(URingError) {
        let fd = eventfd(0, curing_efd_cloexec())
        guard fd >= 0 else { throw .eventfd(call: "eventfd", .current) }
        fileDescriptor = fd
    }

    /// Adds 1 to the eventfd counter, waking the ring. Safe from any thread and
    /// from signal handlers (one `write`). Retries EINTR; never blocks in practice.
    public func wake() {
        var one: UInt64 = 1
        while write(fileDescriptor, &one, 8) < 0 && errno == EINTR {}
    }

    deinit { close(fileDescriptor) }
}
