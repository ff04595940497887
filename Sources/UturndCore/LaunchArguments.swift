import ArgumentParser

/// The arguments the parser sees: the config file's options (if `-c` names
/// one) followed by the command line, so flags override the file. For an
/// option given on the command line, the file's occurrences are dropped
/// first, so a repeatable option's command-line values replace the file's
/// list rather than adding to it.
public struct LaunchArguments: Sendable {
    public var arguments: [String]
    /// Warnings to log at start (coturn options the file had that uturn ignores).
    public var warnings: [String]
    public var configPath: String?
    /// Where each option taken from the config file was written (its last
    /// line), so an error about `--name` can point at the file and line.
    public var fileLines: [String: Int] = [:]

    /// `message` prefixed with `path:line:` when it names an option that came
    /// from the config file (the parser's own messages cannot know).
    public func located(_ message: String) -> String {
        guard let path = configPath else { return message }
        // Every "--name" in the message, in order; the first from the file wins.
        let chars = Array(message)
        var i = 0
        while i + 2 < chars.count {
            if chars[i] == "-" && chars[i + 1] == "-" {
                var j = i + 2
                while j < chars.count && (chars[j].isLetter || chars[j].isNumber || chars[j] == "-") { j += 1 }
                if let line = fileLines[String(chars[(i + 2)..<j])] { return "\(path):\(line): \(message)" }
                i = j
            } else {
                i += 1
            }
        }
        return message
    }

    /// - Parameters:
    ///   - commandLine: the arguments after the program name.
    ///   - load: reads a config file (tests pass their own).
    public static func assemble(
        commandLine: [String],
        load: (String) throws(ConfigFileError) -> ConfigFile = { path throws(ConfigFileError) in
            try ConfigFile.load(path: path)
        }
    ) throws -> LaunchArguments {
        let options = commandLine.prefix { $0 != "--" }
        try rejectUnknownOptions(options)
        guard let path = configPath(in: options) else {
            return LaunchArguments(arguments: commandLine, warnings: [], configPath: nil)
        }
        let file = try load(path)
        let given = Set(options.compactMap(OptionTable.longName(of:)))
        let used = file.entries.filter { !given.contains($0.name) }
        var launch = LaunchArguments(
            arguments: used.map(\.argument) + commandLine, warnings: file.ignored, configPath: path)
        for entry in used { launch.fileLines[entry.name] = entry.line }
        return launch
    }

    /// `-c PATH`, `--config PATH` or `--config=PATH` (the last one given).
    static func configPath(in arguments: ArraySlice<String>) -> String? {
        var path: String?
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let a = arguments[i]
            if a == "-c" || a == "--config" {
                if i + 1 < arguments.endIndex { path = arguments[i + 1] }
                i += 2
                continue
            }
            if a.hasPrefix("--config=") { path = String(a.dropFirst("--config=".count)) }
            i += 1
        }
        return path
    }

    /// A coturn option uturn lacks, on the command line, is an error naming it
    /// (the parser would only say "unknown option").
    ///
    /// Unknown options are reported here too, before parsing: the parser
    /// would run `validate()` first and could complain about a missing
    /// credential instead of the misspelt flag.
    static func rejectUnknownOptions(_ arguments: ArraySlice<String>) throws {
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let a = arguments[i]
            i += 1
            guard a.hasPrefix("-"), a.count > 1 else { continue }
            let name: String
            if a.hasPrefix("--") {
                name = String(a.dropFirst(2).prefix { $0 != "=" })
                if OptionTable.commandLineOnly.contains(name) {
                    if name == "config" && !a.contains("=") { i += 1 }
                    continue
                }
                if let kind = OptionTable.kinds[name] {
                    if kind != .flag && !a.contains("=") { i += 1 }
                    continue
                }
            } else {
                let letter = a[a.index(after: a.startIndex)]
                if letter == "h" { continue }
                if letter == "c" {
                    if a.count == 2 { i += 1 }
                    continue
                }
                guard let long = OptionTable.shortNames[letter] else {
                    // A negative number is a value, not an option.
                    if Int(a) != nil { continue }
                    throw ValidationError("unknown option '\(a)'")
                }
                if OptionTable.kinds[long] != .flag && a.count == 2 { i += 1 }
                continue
            }
            if let reason = CoturnOptions.unsupported[name] {
                throw ValidationError("--\(name) is a coturn option that uturn does not support (\(reason)).")
            }
            if name.isEmpty { continue }
            throw ValidationError("unknown option '--\(name)'")
        }
    }
}
