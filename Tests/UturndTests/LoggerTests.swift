import Glibc
import Testing

@testable import UturndCore

@Suite("Log lines (swift-log handler)")
struct LoggerTests {
    /// What a logger at `level` writes for one line at each level, read back from a pipe.
    func written(level: LogLevel, _ body: (Logger) -> Void) -> [String] {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        body(Logger(level: level, fd: fds[1]))
        close(fds[1])
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        close(fds[0])
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test func formatAndLevelFilter() {
        let lines = written(level: .notice) { log in
            log.debug("not shown")
            log.info("not shown either")
            log.notice("listening on udp 127.0.0.1:3478")
            log.error("boom")
        }
        #expect(lines.count == 2)
        // 2026-11-26T18:00:00.123Z notice listening ...
        let first = lines.first ?? ""
        #expect(first.count > 25 && Array(first)[10] == "T" && Array(first)[23] == "Z")
        #expect(first.hasSuffix(" notice listening on udp 127.0.0.1:3478"))
        #expect(lines.last?.hasSuffix(" error boom") == true)
    }

    @Test func engineLinesGoThroughTheSameHandler() {
        let lines = written(level: .debug) { log in log.engineLog(.warning, "worker 0: GSO off") }
        #expect(lines.count == 1 && lines[0].hasSuffix(" warning worker 0: GSO off"))
    }
}
