// uturn-bench: a TURN load generator over io_uring (flood, rate, alloc, invalid).
import BenchCore
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") || arguments.isEmpty {
    print(BenchOptions.usage)
    exit(arguments.isEmpty ? 64 : 0)
}
let options: BenchOptions
do {
    options = try BenchOptions(arguments: arguments)
} catch {
    FileHandle.standardError.write(Data("uturn-bench: \(error)\n\(BenchOptions.usage)\n".utf8))
    exit(64)
}
do {
    // Unbuffered progress lines, so a pipe sees one per second.
    let out = FileHandle.standardOutput
    let summary = try BenchRunner(options: options, log: { out.write(Data(($0 + "\n").utf8)) }).run()
    out.write(Data((summary.text + "\n").utf8))
    if let path = options.jsonPath {
        try summary.json().write(to: URL(fileURLWithPath: path))
    }
} catch {
    FileHandle.standardError.write(Data("uturn-bench: \(error)\n".utf8))
    exit(1)
}
