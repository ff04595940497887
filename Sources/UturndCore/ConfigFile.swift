import Glibc

/// A problem in the config file that stops uturn from starting.
public struct ConfigFileError: Error, CustomStringConvertible, Equatable {
    public var path: String
    /// 1-based line number; 0 when the file as a whole is the problem.
    public var line: Int
    public var message: String

    public init(path: String, line: Int, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
}

/// A coturn-style config file (`turnserver.conf`), turned into command-line
/// arguments so it goes through the same parser and checks as the flags.
///
/// Syntax, one option per line:
/// - `name=value`, `name = value` or `name value`; a value may be wrapped in
///   double quotes;
/// - a bare `name` for a flag (a flag may also say `=true`/`=false`, `1`/`0`,
///   `yes`/`no`, `on`/`off`);
/// - repeat a line to give a repeatable option several values;
/// - `#` starts a comment at the start of a line or after whitespace;
///   blank lines are skipped. A leading `--` on a name is tolerated.
///
/// coturn options uturn lacks are reported (`ignored`) and skipped; names
/// that are neither uturn's nor coturn's are an error with the line number.
public struct ConfigFile: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var line: Int
        /// The `--name=value` (or `--name`) argument this entry becomes.
        public var argument: String
    }

    public var path: String
    public var entries: [Entry] = []
    /// Warnings for coturn options that were skipped, with file and line.
    public var ignored: [String] = []

    /// The entries as arguments, in file order.
    public var arguments: [String] { entries.map(\.argument) }

    public init(path: String, text: String) throws(ConfigFileError) {
        self.path = path
        var number = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let line = ConfigFile.stripComment(raw).trimmingWhitespace()
            if line.isEmpty { continue }
            try add(line: line, number: number)
        }
    }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(ConfigFileError) -> ConfigFile {
        let text: String
        do { text = try readTextFile(path) } catch { throw ConfigFileError(path: path, line: 0, message: error.message) }
        return try ConfigFile(path: path, text: text)
    }

    mutating func add(line: Substring, number: Int) throws(ConfigFileError) {
        // The name ends at '=' or whitespace, whichever comes first.
        let end = line.firstIndex { $0 == "=" || $0 == " " || $0 == "\t" } ?? line.endIndex
        var name = line[..<end]
        if name.hasPrefix("--") { name = name.dropFirst(2) }
        var rest = line[end...].trimmingWhitespace()
        var hasValue = !rest.isEmpty
        if rest.hasPrefix("=") {
            rest = rest.dropFirst().trimmingWhitespace()
            hasValue = true
        }
        if rest.count >= 2, rest.hasPrefix("\""), rest.hasSuffix("\"") { rest = rest.dropFirst().dropLast() }
        let key = String(name)
        let value = String(rest)

        func fail(_ message: String) -> ConfigFileError { ConfigFileError(path: path, line: number, message: message) }

        if key.isEmpty { throw fail("expected name=value, got '\(line)'") }
        if OptionTable.commandLineOnly.contains(key) {
            throw fail("'\(key)' is only accepted on the command line")
        }
        guard let kind = OptionTable.kinds[key] else {
            if let reason = CoturnOptions.unsupported[key] {
                ignored.append("\(path):\(number): ignored: option '\(key)' is not supported by uturn (\(reason))")
                return
            }
            throw fail("unknown option '\(key)'")
        }
        switch kind {
        case .flag:
            if !hasValue {
                entries.append(Entry(name: key, line: number, argument: "--\(key)"))
                return
            }
            switch value.lowercased() {
            case "true", "yes", "on", "1": entries.append(Entry(name: key, line: number, argument: "--\(key)"))
            case "false", "no", "off", "0": return
            default: throw fail("'\(key)' is a flag: write it bare, or \(key)=true / \(key)=false (got '\(value)')")
            }
        case .value, .list:
            if !hasValue || value.isEmpty {
                guard let fallback = OptionTable.bareDefaults[key] else { throw fail("'\(key)' needs a value") }
                entries.append(Entry(name: key, line: number, argument: "--\(key)=\(fallback)"))
                return
            }
            entries.append(Entry(name: key, line: number, argument: "--\(key)=\(value)"))
        }
    }

    /// The line up to a `#` that starts it or follows whitespace.
    static func stripComment(_ line: Substring) -> Substring {
        var previous: Character = " "
        for i in line.indices {
            let c = line[i]
            if c == "#" && (previous == " " || previous == "\t") { return line[..<i] }
            previous = c
        }
        return line
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}

/// A failed system call, as a sentence for the operator.
public struct SystemError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The whole file as UTF-8 text (invalid bytes are replaced).
func readTextFile(_ path: String) throws(SystemError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SystemError(message: "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError(message: "cannot read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
        if bytes.count > 4 << 20 { throw SystemError(message: "larger than 4 MiB; is this a config file?") }
    }
    return String(decoding: bytes, as: UTF8.self)
}
