import Glibc
import Synchronization
import TURN
import URing

/// Why the engine could not start, in words an operator can act on.
public struct EngineError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Log sink the engine writes to (one line per call, no trailing newline).
/// The daemon decides the format and destination; the engine never prints.
public typealias EngineLog = @Sendable (_ level: EngineLogLevel, _ message: String) -> Void

public enum EngineLogLevel: Int, Sendable, Comparable {
    case debug, info, notice, warning, error
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The relay engine: `config.workers` worker threads, each with its own
/// io_uring, buffer ring, listener sockets (SO_REUSEPORT), relay sockets and
/// TURN tables. `start()` returns once every worker is listening (or throws
/// the first worker's start error); `stop()` may be called from any thread;
/// `wait()` joins the workers.
public final class Engine: Sendable {
    public let config: EngineConfig
    let turn: TURNConfiguration
    let log: EngineLog
    let state: Mutex<State>

    struct State: ~Copyable {
        var threads: [pthread_t] = []
        var controls: [WorkerControl] = []
    }

    public init(config: EngineConfig, turn: TURNConfiguration, log: @escaping EngineLog) throws(EngineError) {
        if let problem = config.problem() { throw EngineError(problem) }
        self.config = config
        self.turn = turn
        self.log = log
        self.state = Mutex(State())
    }
}

/// Placeholder until the worker lands (same commit series); see Worker.swift.
public struct WorkerControl: Sendable {}

extension Engine {
    /// Starts the workers; returns when all listen. Throws the first start error.
    public func start() throws(EngineError) { throw EngineError("engine not implemented yet") }
    /// Asks every worker to stop (any thread, also from a signal-handling thread).
    /// `graceful`: stop taking new allocations and let current ones run up to
    /// `drainSeconds` before exiting; otherwise exit promptly.
    public func stop(graceful: Bool = false, drainSeconds: Int = 0) {}
    /// Blocks until every worker thread has exited.
    public func wait() {}
}
