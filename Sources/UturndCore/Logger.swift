import Glibc
import Logging
import Relay

/// The daemon's log: a swift-log `Logging.Logger` whose handler
/// (`LineLogHandler`) writes `2026-11-26T18:00:00.123Z level message` lines
/// to one file descriptor, dropping lines below `level`. Each line is one
/// write(2), so lines from several threads do not interleave. Sendable: it
/// holds the level, the descriptor (which lives as long as the process) and
/// a swift-log logger writing to it.
///
/// The engine logs through a plain closure (`engineLog`), so the library
/// modules do not depend on swift-log; `bootstrap()` points every other
/// swift-log user in the process (the metrics server's packages) at the
/// same destination.
public struct Logger: Sendable {
    public let level: LogLevel
    let fd: Int32
    let swiftLog: Logging.Logger
    /// Whether the lines go to stderr already (so fatal errors need not be repeated there).
    public var isStandardError: Bool { fd == STDERR_FILENO }

    public init(level: LogLevel, fd: Int32 = STDERR_FILENO) {
        self.level = level
        self.fd = fd
        var l = Logging.Logger(label: "uturnd") { _ in LineLogHandler(fd: fd, logLevel: level.swiftLogLevel) }
        l.logLevel = level.swiftLogLevel
        swiftLog = l
    }

    /// Makes this destination swift-log's default for the whole process.
    /// swift-log allows one bootstrap per process: the daemon calls it once.
    public func bootstrap() {
        let fd = self.fd
        let level = self.level
        LoggingSystem.bootstrap { _ in LineLogHandler(fd: fd, logLevel: level.swiftLogLevel) }
    }

    /// Opens the destination (a file is created if needed and appended to).
    public init(level: LogLevel, destination: LogDestination) throws(SystemError) {
        switch destination {
        case .standardError: self.init(level: level, fd: STDERR_FILENO)
        case .standardOutput: self.init(level: level, fd: STDOUT_FILENO)
        case .file(let path):
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd < 0 {
                throw SystemError(message: "cannot open --log-file \(path): \(String(cString: strerror(errno)))")
            }
            self.init(level: level, fd: fd)
        }
    }

    public func log(_ level: LogLevel, _ message: String) {
        swiftLog.log(level: level.swiftLogLevel, "\(message)")
    }

    public func debug(_ m: String) { log(.debug, m) }
    public func info(_ m: String) { log(.info, m) }
    public func notice(_ m: String) { log(.notice, m) }
    public func warning(_ m: String) { log(.warning, m) }
    public func error(_ m: String) { log(.error, m) }

    /// The engine's sink, mapped onto this logger.
    public var engineLog: EngineLog {
        let logger = self
        return { level, message in
            let mapped: LogLevel =
                switch level {
                case .debug: .debug
                case .info: .info
                case .notice: .notice
                case .warning: .warning
                case .error: .error
                }
            logger.log(mapped, message)
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return  // nowhere left to report a failing log
            }
            offset += n
        }
    }

    /// UTC with milliseconds, RFC 3339.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var seconds = ts.tv_sec
        var t = tm()
        gmtime_r(&seconds, &t)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(t.tm_year + 1900, 4))-\(pad(t.tm_mon + 1, 2))-\(pad(t.tm_mday, 2))T"
            + "\(pad(t.tm_hour, 2)):\(pad(t.tm_min, 2)):\(pad(t.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }
}

/// swift-log handler for uturn's line format. The level word is uturn's
/// (`debug info notice warning error`; swift-log's trace and critical map to
/// the nearest). Metadata, if any, follows the message as `key=value`.
struct LineLogHandler: LogHandler {
    let fd: Int32
    var logLevel: Logging.Logger.Level
    var metadata: Logging.Logger.Metadata = [:]

    init(fd: Int32, logLevel: Logging.Logger.Level) {
        self.fd = fd
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logging.Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logging.Logger.Level, message: Logging.Logger.Message, metadata extra: Logging.Logger.Metadata?,
        source: String, file: String, function: String, line: UInt
    ) {
        let word: String =
            switch level {
            case .trace, .debug: "debug"
            case .info: "info"
            case .notice: "notice"
            case .warning: "warning"
            case .error, .critical: "error"
            }
        var all = metadata
        if let extra { all.merge(extra) { _, new in new } }
        let tail = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        var text = "\(Logger.timestamp()) \(word) \(message)\(tail)\n"
        text.withUTF8 { Logger.writeAll(fd, $0) }
    }
}

extension LogLevel {
    var swiftLogLevel: Logging.Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
    }
}

/// Writes one line to stderr, as is.
func printError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { Logger.writeAll(STDERR_FILENO, $0) }
}
