import Glibc
import Relay
import STUN
import Synchronization
import TURN
import UserStores

/// The credential thread: owns the user database connection (`--userdb`,
/// `--psql-userdb`, `--redis-userdb`), polls it once a second and, when
/// what it holds for the realm changed, hands every worker a new TURN
/// configuration, exactly as a SIGHUP reload does. Database work therefore
/// never runs on a worker: workers only ever see an immutable
/// `CredentialStore` with every user's key already derived.
///
/// The last snapshot read stays in force while the database is down, so
/// known users keep authenticating and unknown ones get 401; the outage is
/// logged once with its cause and the thread reconnects by itself.
///
/// A name a worker does not know is looked up on its own (`lookUp`), so a
/// user added since the last poll logs in at the first attempt; the
/// request waits for the answer (Relay/CredentialLookups.swift).
///
/// The realm's options in the database (RealmOptions) replace the
/// configured `max-bps` (at start) and quotas (followed while running).
///
/// Trade-off (see docs/administration.md): every user of the realm is held
/// in memory, which suits up to some hundred thousand users.
public final class CredentialSync: Sendable {
    public let location: StoreLocation
    let logger: Logger
    let interval: Duration
    private let state: Mutex<State>
    private let stopRequested = Atomic<Bool>(false)

    struct State {
        /// The configuration from the command line and config file (static users).
        var base: TURNConfiguration
        /// The last snapshot read (nil: none yet).
        var snapshot: StoreSnapshot?
        /// `base` with `snapshot` applied, as last handed to the workers
        /// (nil when `base` changed since): the start of an incremental update.
        var composed: TURNConfiguration?
        var engine: Engine?
        /// The workers' quotas, and the traffic limits they started with
        /// (`useQuotas`); nil until then.
        var quotas: AllocationQuotas?
        var limitsInForce: RateLimits?
        /// `--user-quota` and `--total-quota` as configured (a SIGHUP may
        /// change them: `setBase`); the database's options win.
        var configuredQuotas: (perUser: Int, total: Int)
    }

    public init(
        location: StoreLocation, base: TURNConfiguration, configuredQuotas: (perUser: Int, total: Int) = (0, 0),
        logger: Logger, interval: Duration = .seconds(1)
    ) {
        self.location = location
        self.logger = logger
        self.interval = interval
        self.state = Mutex(State(base: base, configuredQuotas: configuredQuotas))
    }

    /// The quotas the workers share and the traffic limits they run with
    /// (those of `initialConfiguration`): from now on the database's quota
    /// options are put in force on them, starting with the ones read.
    public func useQuotas(_ quotas: AllocationQuotas, limits: RateLimits) {
        state.withLock { s in
            s.quotas = quotas
            s.limitsInForce = limits
            applyQuotas(s)
        }
    }

    /// The traffic limits of a configuration about to go to the workers:
    /// they take new values while the same limits stay on
    /// (`RateLimits.canReload`; a realm's max-bps changed in the database,
    /// or a SIGHUP), and keep the ones in force otherwise (max-bps turned on
    /// or off by the realm's options waits for a restart: logged).
    private func followRateLimits(_ s: inout State, _ next: RateLimits) {
        guard let inForce = s.limitsInForce, inForce != next else { return }
        if inForce.canReload(to: next) {
            s.limitsInForce = next
            if inForce.maxBytesPerSecond != next.maxBytesPerSecond {
                logger.notice(
                    "max-bps now \(next.maxBytesPerSecond) (was \(inForce.maxBytesPerSecond)), for every allocation at once")
            }
        } else if inForce.maxBytesPerSecond != next.maxBytesPerSecond {
            logger.warning(
                "user database \(location): the realm's max-bps is now \(next.maxBytesPerSecond); the \(inForce.maxBytesPerSecond) in force stays until a restart (turning a traffic limit on or off needs one)")
        }
    }

    /// Puts the quotas of the snapshot in force (the configured ones where
    /// it sets none); says so when they change.
    private func applyQuotas(_ s: State) {
        guard let quotas = s.quotas, let limits = s.limitsInForce else { return }
        let (options, _) = RealmOptions.parse(s.snapshot?.realmOptions ?? [:])
        let (perUser, total) = options.quotas(
            configuredPerUser: s.configuredQuotas.perUser, configuredTotal: s.configuredQuotas.total, limits: limits)
        guard perUser != quotas.perUser || total != quotas.total else { return }
        quotas.setLimits(perUser: perUser, total: total)
        let from =
            options.userQuota != nil || options.totalQuota != nil ? "realm options of \(location)" : "configuration"
        logger.notice(
            "quotas now \(perUser == 0 ? "none" : "\(perUser)") per user, \(total == 0 ? "none" : "\(total)") in total (\(from))")
    }

    /// One synchronous read before the workers start, so users in the
    /// database can authenticate from the first packet; the configuration
    /// to start with. A database that cannot be read is logged, not fatal.
    public func initialConfiguration() -> TURNConfiguration {
        let realm = state.withLock { $0.base.credentials.realm }
        do throws(StoreError) {
            let store = try location.open()
            let snapshot = try store.snapshot(realm: realm)
            logger.notice("user database \(location): \(snapshot.users.count) users, \(snapshot.secrets.count) REST secrets, \(snapshot.allowedPeers.count + snapshot.deniedPeers.count) peer ranges, realm options \(CredentialSync.optionsText(snapshot.realmOptions)) for realm \"\(realm)\"")
            return state.withLock {
                $0.snapshot = snapshot
                let turn = compose($0.base, snapshot)
                $0.composed = turn
                return turn
            }
        } catch {
            logger.warning("user database \(location) unavailable at start (\(error.description)); static credentials only until it answers")
            return state.withLock { $0.base }
        }
    }

    /// Starts polling; every change goes to `engine`.
    public func start(engine: Engine) {
        state.withLock { $0.engine = engine }
        let body = Unmanaged.passRetained(ThreadBody { [self] in self.run() })
        var thread = pthread_t()
        // The thread inherits the daemon's blocked signals (sigwait takes them on the main thread).
        let rc = pthread_create(&thread, nil, { arg in
            let b = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
            b.body()
            return nil
        }, body.toOpaque())
        if rc == 0 {
            pthread_detach(thread)
        } else {
            body.release()
            logger.error("user database: cannot start the credential thread (error \(rc)); database changes are not followed")
        }
    }

    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    /// A SIGHUP reload: new static settings and `--user-quota` and
    /// `--total-quota` (in force where the database's realm options set
    /// none); the database part is kept and reapplied on top (a changed
    /// realm is read afresh at the next poll).
    public func setBase(_ turn: TURNConfiguration, configuredQuotas: (perUser: Int, total: Int)) {
        state.withLock { s in
            let realmChanged = s.base.credentials.realm != turn.credentials.realm
            s.base = turn
            s.configuredQuotas = configuredQuotas
            if realmChanged { s.snapshot = nil }
            let next = s.snapshot.map { compose(turn, $0) } ?? turn
            s.composed = s.snapshot == nil ? nil : next
            followRateLimits(&s, next.rateLimits)
            s.engine?.reload(turn: next)
            applyQuotas(s)
        }
    }

    private func run() {
        let engine = state.withLock { $0.engine }
        var store: (any UserStore)?
        var marker: Int64?
        var realm = ""
        var outage: String?
        while !stopRequested.load(ordering: .relaxed) {
            do throws(StoreError) {
                if store == nil {
                    store = try location.open()
                    marker = nil
                    if outage != nil {
                        logger.notice("user database \(location) reachable again")
                        outage = nil
                    }
                }
                let current = state.withLock { $0.base.credentials.realm }
                let m = try store!.changeMarker()
                if m == nil || m != marker || current != realm {
                    let snapshot = try store!.snapshot(realm: current)
                    marker = m
                    realm = current
                    publish(snapshot, realm: current)
                }
            } catch {
                store = nil
                if outage == nil {
                    let known = state.withLock { $0.snapshot?.users.count ?? 0 }
                    logger.warning(
                        "user database \(location) unavailable: \(error.description); the \(known) users last read keep working, others get 401; retrying every second")
                    outage = error.description
                }
            }
            if let engine { waitServingLookups(&store, engine: engine) } else { sleepInterval() }
        }
    }

    /// Waits out the poll interval, answering the workers' on-miss lookups
    /// (Relay/CredentialLookups.swift) as they come.
    private func waitServingLookups(_ store: inout (any UserStore)?, engine: Engine) {
        let start = ContinuousClock.now
        while !stopRequested.load(ordering: .relaxed) {
            while let request = engine.lookups.next() { lookUp(request, store: &store, engine: engine) }
            let left = interval - (ContinuousClock.now - start)
            if left <= .zero { return }
            let (s, a) = left.components
            engine.lookups.wait(milliseconds: Int32(clamping: s * 1000 + a / 1_000_000_000_000_000 + 1))
        }
    }

    /// One user the last snapshot did not hold: read it, hand the workers
    /// the configuration with it (like a poll that found it), then tell the
    /// asking worker, whose inbox takes the two in that order. A database
    /// that fails is answered as such (401; the outage is logged by the
    /// poll); one that hangs leaves the worker to time the request out.
    private func lookUp(_ request: LookupRequest, store: inout (any UserStore)?, engine: Engine) {
        let (realm, known) = state.withLock { ($0.base.credentials.realm, $0.snapshot?.users[request.username] != nil) }
        var found = known
        var failed = false
        if !known {
            do throws(StoreError) {
                if store == nil { store = try location.open() }
                if let secret = try store!.key(for: request.username, realm: realm) {
                    found = true
                    let next = state.withLock { s in
                        var n = s.snapshot ?? StoreSnapshot()
                        n.users[request.username] = secret
                        return n
                    }
                    publish(next, realm: realm)
                }
            } catch {
                store = nil
                failed = true
            }
        }
        engine.answerLookup(worker: request.worker, username: request.username, found: found, failed: failed)
    }

    private func sleepInterval() {
        let (s, a) = interval.components
        var request = timespec(tv_sec: Int(s), tv_nsec: Int(a / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }

    /// Applies a snapshot when it differs from the one in force.
    private func publish(_ snapshot: StoreSnapshot, realm: String) {
        let changed: (old: StoreSnapshot?, turn: TURNConfiguration, engine: Engine?)? = state.withLock { s in
            guard s.base.credentials.realm == realm, s.snapshot != snapshot else { return nil }
            let old = s.snapshot
            s.snapshot = snapshot
            // Only the users that changed are re-derived when nothing else did
            // (a realm of 100k users then costs a few dictionary updates per change).
            let turn: TURNConfiguration
            if let composed = s.composed, let old,
                let (updated, problems) = CredentialSync.update(composed, base: s.base, from: old, to: snapshot)
            {
                for p in problems { logger.warning("user database \(location): \(p)") }
                turn = updated
            } else {
                turn = compose(s.base, snapshot)
            }
            s.composed = turn
            followRateLimits(&s, turn.rateLimits)
            s.engine?.reload(turn: turn)
            applyQuotas(s)
            return (old, turn, s.engine)
        }
        guard let changed else { return }
        logger.notice("user database \(location): \(CredentialSync.describe(from: changed.old, to: snapshot))")
    }

    /// The base configuration with the database's users, secrets and peer
    /// ranges added, and its realm's `max-bps` (RealmOptions). Entries uturn
    /// cannot use are skipped (and logged).
    func compose(_ base: TURNConfiguration, _ snapshot: StoreSnapshot) -> TURNConfiguration {
        let (turn, problems) = CredentialSync.compose(base, snapshot)
        for p in problems { logger.warning("user database \(location): \(p)") }
        return turn
    }

    public static func compose(_ base: TURNConfiguration, _ snapshot: StoreSnapshot) -> (TURNConfiguration, [String]) {
        var turn = base
        var problems: [String] = []
        var keys: [String: LongTermKey] = [:]
        var passwords: [String: String] = [:]
        for (name, secret) in snapshot.users {
            switch secret {
            case .key(let hex):
                if let key = LongTermKey(hex: hex) { keys[name] = key } else { problems.append("user \(name): the key is not 32 or 64 hex digits; skipped") }
            case .password(let p): passwords[name] = p
            }
        }
        turn.credentials.addDatabaseUsers(keys: keys, passwords: passwords)
        if !snapshot.secrets.isEmpty {
            var rest = turn.credentials.rest ?? RESTCredentials(secrets: [])
            for s in snapshot.secrets where !rest.secrets.contains(Array(s.utf8)) { rest.secrets.append(Array(s.utf8)) }
            // Database secrets turn the REST API on, as coturn's do once use-auth-secret is set;
            // without --use-auth-secret they are ignored.
            if turn.credentials.rest != nil { turn.credentials.rest = rest }
        }
        for (list, allow) in [(snapshot.allowedPeers, true), (snapshot.deniedPeers, false)] {
            for text in list {
                guard let blocks = parseAddressBlocks(text) else {
                    problems.append("\(allow ? "allowed" : "denied")_peer_ip '\(text)' is not an address, CIDR or range; skipped")
                    continue
                }
                if allow { turn.peerPolicy.allowed += blocks } else { turn.peerPolicy.denied += blocks }
            }
        }
        let (options, optionProblems) = RealmOptions.parse(snapshot.realmOptions)
        problems += optionProblems
        let (limits, conflict) = options.apply(to: base.rateLimits)
        turn.rateLimits = limits
        if let conflict { problems.append(conflict) }
        return (turn, problems)
    }

    /// `composed` (= `base` with `old` applied) changed to hold `new`
    /// instead, touching only the users that differ; nil when secrets, peer
    /// ranges or realm options changed too (the caller then composes afresh).
    public static func update(
        _ composed: TURNConfiguration, base: TURNConfiguration, from old: StoreSnapshot, to new: StoreSnapshot
    ) -> (TURNConfiguration, [String])? {
        guard old.secrets == new.secrets, old.allowedPeers == new.allowedPeers, old.deniedPeers == new.deniedPeers,
            old.realmOptions == new.realmOptions
        else { return nil }
        var turn = composed
        var problems: [String] = []
        var keys: [String: LongTermKey] = [:]
        var passwords: [String: String] = [:]
        for (name, secret) in old.users where new.users[name] != secret && !base.credentials.hasUser(name) {
            turn.credentials.removeUser(name)
        }
        for (name, secret) in new.users where old.users[name] != secret {
            switch secret {
            case .key(let hex):
                if let key = LongTermKey(hex: hex) { keys[name] = key } else { problems.append("user \(name): the key is not 32 or 64 hex digits; skipped") }
            case .password(let p): passwords[name] = p
            }
        }
        turn.credentials.addDatabaseUsers(keys: keys, passwords: passwords)
        return (turn, problems)
    }

    /// "max-bps=64000 user-quota=1", or "none".
    static func optionsText(_ options: [String: String]) -> String {
        options.isEmpty ? "none" : options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// "users 3 → 4 (+carol), secrets 1 → 1", names only, never keys.
    static func describe(from old: StoreSnapshot?, to new: StoreSnapshot) -> String {
        let before = old ?? StoreSnapshot()
        var parts: [String] = []
        let added = new.users.keys.filter { before.users[$0] == nil }.sorted()
        let removed = before.users.keys.filter { new.users[$0] == nil }.sorted()
        let changed = new.users.keys.filter { before.users[$0] != nil && before.users[$0] != new.users[$0] }.sorted()
        var detail = added.map { "+\($0)" } + removed.map { "-\($0)" }
        if !changed.isEmpty { detail.append("new key for \(changed.joined(separator: ", "))") }
        parts.append("users \(before.users.count) → \(new.users.count)\(detail.isEmpty ? "" : " (\(detail.joined(separator: ", ")))")")
        if before.secrets != new.secrets { parts.append("REST secrets \(before.secrets.count) → \(new.secrets.count)") }
        if before.allowedPeers != new.allowedPeers || before.deniedPeers != new.deniedPeers {
            parts.append("peer ranges \(before.allowedPeers.count) allow / \(before.deniedPeers.count) deny → \(new.allowedPeers.count) / \(new.deniedPeers.count)")
        }
        if before.realmOptions != new.realmOptions {
            parts.append("realm options \(optionsText(before.realmOptions)) → \(optionsText(new.realmOptions))")
        }
        return parts.joined(separator: ", ")
    }
}

/// A closure handed to a new pthread.
private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
