import Synchronization
import TURN

/// What the admin API (a control thread) asks of the workers. Each worker
/// answers for its own allocations, on its own thread, when it takes the
/// request from its inbox (`WorkerMessage.admin`); it never shares its tables.
public enum AdminCommand: Sendable, Equatable {
    /// Snapshots of the live allocations (of one user when given).
    case sessions(user: String?)
    /// End every allocation of this user, as a Refresh with LIFETIME 0
    /// would, and close the TCP/TLS connection each was made over.
    case disconnectUser(String)
    /// End one allocation (sent only to the worker that owns it).
    case disconnectSession(AllocationID)
}

/// One worker's answer: for `.sessions` the snapshots, for a disconnect the
/// allocations it ended (as they were just before).
public struct WorkerAnswer: Sendable {
    public var worker: Int
    public var sessions: [AllocationSnapshot]

    public init(worker: Int, sessions: [AllocationSnapshot]) {
        self.worker = worker
        self.sessions = sessions
    }
}

/// Every answer that came back in time, and the workers that gave none
/// (stopped, inbox full, or slower than the timeout).
public struct AdminResult: Sendable {
    public var answers: [WorkerAnswer]
    public var missing: [Int]

    public init(answers: [WorkerAnswer], missing: [Int]) {
        self.answers = answers
        self.missing = missing
    }

    /// All sessions, ordered by worker then slot.
    public var sessions: [AllocationSnapshot] { answers.flatMap(\.sessions) }
}

/// Gathers the workers' answers to one command; calls its completion once,
/// when the last asked worker has answered or at `expire()`, whichever is
/// first (later answers are dropped). Any thread may call either.
public final class AdminReplies: Sendable {
    struct State {
        var answers: [Int: WorkerAnswer] = [:]
        var waiting: Set<Int>
        /// Workers that were asked but could not be (full inbox).
        var undelivered: Set<Int> = []
        var completion: (@Sendable (AdminResult) -> Void)?
    }
    let state: Mutex<State>

    init(workers: [Int], completion: @escaping @Sendable (AdminResult) -> Void) {
        state = Mutex(State(waiting: Set(workers), completion: completion))
    }

    /// A worker's answer (from the worker thread).
    func deliver(_ answer: WorkerAnswer) {
        finish { s in
            guard s.waiting.remove(answer.worker) != nil else { return false }
            s.answers[answer.worker] = answer
            return s.waiting.isEmpty
        }
    }

    /// A worker that will not answer (its inbox was full).
    func giveUp(on worker: Int) {
        finish { s in
            guard s.waiting.remove(worker) != nil else { return false }
            s.undelivered.insert(worker)
            return s.waiting.isEmpty
        }
    }

    /// Completes now with what has arrived (the asker's timeout).
    public func expire() { finish { _ in true } }

    /// Runs `update` under the lock; when it says done, calls the
    /// completion (outside the lock) exactly once.
    private func finish(_ update: (inout State) -> Bool) {
        let ready = state.withLock { s -> (@Sendable (AdminResult) -> Void, AdminResult)? in
            guard s.completion != nil, update(&s), let c = s.completion else { return nil }
            s.completion = nil
            let answers = s.answers.keys.sorted().map { s.answers[$0]! }
            return (c, AdminResult(answers: answers, missing: s.waiting.union(s.undelivered).sorted()))
        }
        if let (completion, result) = ready { completion(result) }
    }
}

/// A command on its way to one worker, with where its answer goes.
struct AdminRequest: Sendable {
    var command: AdminCommand
    var replies: AdminReplies
}

extension Engine {
    /// Sends `command` to the workers (for `.disconnectSession`, only to
    /// `worker`); `completion` runs once with their answers, on the thread
    /// of the last worker to answer or of whoever calls `expire()` on the
    /// returned object (the caller's timeout: a stopped worker never answers).
    /// As it may run on a worker thread, `completion` should only hand the
    /// result to the caller's own thread.
    @discardableResult
    public func admin(
        _ command: AdminCommand, worker: Int? = nil, completion: @escaping @Sendable (AdminResult) -> Void
    ) -> AdminReplies {
        let targets = worker.map { controls.indices.contains($0) ? [$0] : [] } ?? Array(controls.indices)
        let replies = AdminReplies(workers: targets, completion: completion)
        if targets.isEmpty { replies.expire() }
        for w in targets where !controls[w].send(.admin(AdminRequest(command: command, replies: replies))) {
            log(.warning, "worker \(w): inbox full; an admin request was not delivered")
            replies.giveUp(on: w)
        }
        return replies
    }
}
