#if canImport(Glibc)
import Glibc
#endif

/// The one front door for the plain system calls the engine makes around the
/// ring (`close`, `shutdown`, `setsockopt`, address queries).
///
/// Each wrapper names the call in its error, retries EINTR where that is
/// meaningful, and traps on EBADF and EFAULT: those mean the program handed
/// the kernel a descriptor or a pointer it does not own, a bug that must not
/// be carried on silently (closing a descriptor twice could close one another
/// part of the worker just opened). swift-nio's `NIOPosix/System.swift` is the
/// model. Data-path I/O goes through the ring, never through here.
public enum Syscall {
    /// Traps when `errno` says the caller's descriptor or pointer was not its own.
    @usableFromInline
    static func checkNotABug(_ call: StaticString, _ e: Int32) {
        if e == EBADF || e == EFAULT {
            preconditionFailure("\(call) failed with \(Errno(rawValue: e)): a descriptor or pointer the caller does not own")
        }
    }

    /// Closes `fd`. EINTR is not retried: on Linux the descriptor is gone
    /// either way, and a retry could close a descriptor reused meanwhile.
    /// Other errors (EIO from a file system) cannot happen on sockets and are
    /// ignored. The corresponding C function is `close`.
    public static func close(_ fd: Int32) {
        if Glibc.close(fd) != 0 { checkNotABug("close", errno) }
    }

    /// Shuts both directions of a connected socket down. ENOTCONN (the other
    /// end is already gone) is not an error here. The C function is `shutdown`.
    public static func shutdownBoth(_ fd: Int32) {
        if Glibc.shutdown(fd, Int32(SHUT_RDWR)) != 0 { checkNotABug("shutdown", errno) }
    }

    /// Sets an integer socket option; `what` names it in the error
    /// (`SO_REUSEPORT`). The corresponding C function is `setsockopt`.
    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String)
        throws(URingError)
    {
        var v = value
        guard setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            let e = errno
            checkNotABug("setsockopt", e)
            throw .socket(call: "setsockopt(\(what))", Errno(rawValue: e))
        }
    }

    /// Sets a socket option from raw bytes (a `timeval`, ...).
    public static func setOption(
        _ fd: Int32, _ level: Int32, _ name: Int32, bytes: UnsafeRawBufferPointer, _ what: String
    ) throws(URingError) {
        guard setsockopt(fd, level, name, bytes.baseAddress, socklen_t(bytes.count)) == 0 else {
            let e = errno
            checkNotABug("setsockopt", e)
            throw .socket(call: "setsockopt(\(what))", Errno(rawValue: e))
        }
    }

    /// The local (`getsockname`) or remote (`getpeername`) address of `fd`.
    public static func address(of fd: Int32, peer: Bool) throws(URingError) -> SocketAddress {
        var s = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutableBytes(of: &s) { raw in
            let p = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            return peer ? getpeername(fd, p, &len) : getsockname(fd, p, &len)
        }
        let name = peer ? "getpeername" : "getsockname"
        guard r == 0 else {
            let e = errno
            checkNotABug(peer ? "getpeername" : "getsockname", e)
            throw .socket(call: name, Errno(rawValue: e))
        }
        guard let a = SocketAddress(storage: s) else { throw .socket(call: name, .invalidArgument) }
        return a
    }
}
