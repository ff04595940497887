import Glibc
import Synchronization

/// One on-miss lookup: worker `worker` holds requests from `username`,
/// a name its credential store did not know.
public struct LookupRequest: Sendable {
    public let worker: Int
    public let username: String
}

/// The channel between the workers and the credential thread (uturnd's
/// `CredentialSync`) for users the last database snapshot did not hold.
/// A worker parks the request (PendingLookups) and sends the name here
/// without blocking (a bounded queue; full: the request is answered 401 as
/// before); the credential thread waits on `eventFD`, queries the store,
/// hands the workers the new configuration and then answers the asking
/// worker through its inbox (`Engine.answerLookup`), in that order, so the
/// worker re-runs the parked requests with the user already known.
///
/// Off (workers answer unknown users at once) unless `enable()` is called
/// before `Engine.start()` (uturnd does when a user database is set; the
/// credential thread takes the lookups once it runs).
public final class CredentialLookups: Sendable {
    let requests = ControlQueue<LookupRequest>(capacity: 256)
    private let enabled = Atomic<Bool>(false)
    /// A non-blocking pipe: workers write a byte per lookup asked for (a
    /// full pipe is fine: it is readable already), the credential thread
    /// polls the read end.
    private let readFD: Int32
    private let writeFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
        } else {
            fds = [-1, -1]
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        if readFD >= 0 { close(readFD) }
        if writeFD >= 0 { close(writeFD) }
    }

    /// Workers started after this park requests from unknown users.
    public func enable() { enabled.store(readFD >= 0, ordering: .releasing) }

    var isEnabled: Bool { enabled.load(ordering: .acquiring) }

    /// Worker side: asks for `username`; false when the queue is full.
    func request(worker: Int, username: String) -> Bool {
        guard requests.send(LookupRequest(worker: worker, username: username)) else { return false }
        var one: UInt8 = 1
        _ = write(writeFD, &one, 1)
        return true
    }

    /// Credential-thread side (the one consumer): waits until a lookup is
    /// asked for or `milliseconds` pass.
    public func wait(milliseconds: Int32) {
        var p = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, milliseconds) > 0 else { return }
        var sink = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &sink, { read(readFD, $0.baseAddress, $0.count) }) == 32 {}
    }

    /// The next lookup asked for, or nil. Credential thread only.
    public func next() -> LookupRequest? { requests.receive() }
}
