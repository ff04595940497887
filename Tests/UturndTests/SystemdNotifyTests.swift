import Glibc
import Testing
import UturndCore

/// A bound AF_UNIX datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let fd: Int32
    let name: String

    /// `abstract`: a Linux abstract name (given to uturnd as '@name').
    init(abstract: Bool) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        let unique = "uturn-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var path = abstract ? [UInt8(0)] + Array(unique.utf8) : Array("/tmp/\(unique).sock".utf8)
        name = abstract ? "@" + unique : "/tmp/\(unique).sock"
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        try #require(rc == 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        path.removeAll()
    }

    deinit {
        close(fd)
        if name.hasPrefix("/") { unlink(name) }
    }

    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

@Suite("sd_notify")
struct SystemdNotifyTests {
    @Test(arguments: [false, true])
    func statesArriveAsDatagrams(abstract: Bool) throws {
        let socket = try NotifySocket(abstract: abstract)
        let notifier = SystemdNotifier(environment: socket.name)
        #expect(notifier.isActive)
        #expect(notifier.ready(status: "relaying"))
        #expect(socket.receive() == "READY=1\nSTATUS=relaying")
        #expect(notifier.reloading())
        let reloading = try #require(socket.receive()).split(separator: "\n")
        #expect(reloading.first == "RELOADING=1")
        let usec = try #require(UInt64(reloading.last?.dropFirst("MONOTONIC_USEC=".count) ?? ""))
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        #expect(usec <= UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)
        #expect(notifier.stopping())
        #expect(socket.receive() == "STOPPING=1")
    }

    @Test(arguments: [nil, "", "relative/path", "@"])
    func inactiveWithoutAUsableSocket(name: String?) {
        let notifier = SystemdNotifier(environment: name)
        #expect(!notifier.isActive)
        #expect(!notifier.ready())
    }

    @Test func tooLongOrAbsentPathFailsQuietly() {
        #expect(!SystemdNotifier(environment: "/" + String(repeating: "x", count: 200)).ready())
        #expect(!SystemdNotifier(environment: "/nonexistent/uturn-notify.sock").ready())
    }
}

/// The files under packaging/ stay usable: the example config passes the
/// same checks as start-up, and the unit keeps the settings uturnd relies on.
@Suite("packaging")
struct PackagingTests {
    static let root = String(#filePath).components(separatedBy: "/Tests/UturndTests/")[0]

    @Test func exampleConfigIsValid() throws {
        let path = Self.root + "/packaging/uturnd.conf"
        let launch = try LaunchArguments.assemble(commandLine: ["-c", path, "--check-config"])
        #expect(launch.warnings.isEmpty)
        let options = try #require(try Uturnd.parseAsRoot(launch.arguments) as? Uturnd)
        let settings = try Settings(options, onlineCPUs: 2)
        #expect(settings.userNames == ["alice"])
        #expect(settings.drainSeconds == 30)
    }

    @Test func unitFileHasTheRequiredSettings() throws {
        let path = Self.root + "/packaging/uturnd.service"
        let file = fopen(path, "r")
        try #require(file != nil)
        defer { fclose(file) }
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            lines.append(line.trimmingCharacters(in: "\n"))
        }
        for required in [
            "Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict",
            "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "LimitNOFILE=1048576", "LimitMEMLOCK=infinity",
        ] {
            #expect(lines.contains(required), "\(required)")
        }
        // No active SystemCallFilter (io_uring calls would need allowing).
        #expect(!lines.contains { $0.hasPrefix("SystemCallFilter=") })
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.last == set { s.removeLast() }
        return s
    }
}
