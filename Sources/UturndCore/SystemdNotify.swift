import Glibc

/// The systemd readiness protocol (sd_notify(3)) without libsystemd: when
/// `NOTIFY_SOCKET` names an AF_UNIX datagram socket (a path, or an abstract
/// name written with a leading '@'), each state change is one datagram of
/// `KEY=value` lines. Without `NOTIFY_SOCKET` every call does nothing.
public struct SystemdNotifier: Sendable {
    /// The socket address as given (nil: not under a notifying supervisor).
    public let socketName: String?

    public init(environment name: String? = SystemdNotifier.environmentSocket()) {
        if let name, name.count > 1, name.hasPrefix("/") || name.hasPrefix("@") {
            socketName = name
        } else {
            socketName = nil
        }
    }

    public static func environmentSocket() -> String? {
        guard let raw = getenv("NOTIFY_SOCKET") else { return nil }
        return String(cString: raw)
    }

    public var isActive: Bool { socketName != nil }

    /// `READY=1`: start-up finished (or a reload did).
    @discardableResult public func ready(status: String? = nil) -> Bool {
        send(["READY=1"] + (status.map { ["STATUS=\($0)"] } ?? []))
    }

    /// `RELOADING=1` with the CLOCK_MONOTONIC time, as Type=notify-reload wants.
    @discardableResult public func reloading() -> Bool {
        send(["RELOADING=1", "MONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())"])
    }

    /// `STOPPING=1`: shutting down.
    @discardableResult public func stopping(status: String? = nil) -> Bool {
        send(["STOPPING=1"] + (status.map { ["STATUS=\($0)"] } ?? []))
    }

    /// Sends the lines as one datagram; false when not active or it failed.
    @discardableResult public func send(_ lines: [String]) -> Bool {
        guard let name = socketName else { return false }
        let message = lines.joined(separator: "\n")
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return false }
        defer { close(fd) }

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(name.utf8)
        let abstract = path.first == UInt8(ascii: "@")
        if abstract { path[0] = 0 }  // Linux abstract namespace: a leading NUL byte
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A path needs room for its terminating NUL; an abstract name does not have one.
        guard path.count <= (abstract ? capacity : capacity - 1) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let length = socklen_t(pathOffset + path.count + (abstract ? 0 : 1))

        var bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeMutableBytes { buffer in
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
        return sent == bytes.count
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
