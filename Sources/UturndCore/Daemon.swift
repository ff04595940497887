import Glibc
import Relay
import TURN

/// The daemon's life once its settings are built: start the engine, report
/// where it listens, turn signals into stop requests, wait for the workers.
///
/// Signals are blocked in the main thread before the engine starts, so every
/// worker thread inherits the mask and the main thread alone takes them, with
/// sigwait(2), outside any signal-handler context:
/// - SIGTERM: graceful stop (no new allocations, drain up to --drain-timeout);
/// - SIGINT: prompt stop; a second SIGTERM during a drain also stops promptly;
/// - SIGHUP: reload (see `Reloader`): rebuild the settings from the config
///   file and the original command line; on success the workers get the new
///   TURN configuration, on failure one error line and nothing changes;
/// - SIGUSR1: sent by the waiter thread when every worker has exited.
///
/// Under systemd (NOTIFY_SOCKET set) it reports READY=1 once the engine runs,
/// RELOADING=1 / READY=1 around a reload and STOPPING=1 on SIGTERM/SIGINT.
public enum Daemon {
    /// Runs until the engine stops; returns the process exit status.
    /// `reload` (with the options `settings` came from) enables SIGHUP.
    public static func run(
        _ settings: Settings, logger: Logger, reload: (Reloader, Uturnd)? = nil,
        notifier: SystemdNotifier = SystemdNotifier()
    ) -> Int32 {
        var settings = settings
        logger.bootstrap()
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGUSR1] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        // --userdb and friends: the credential thread (started with the workers).
        let sync = settings.userDatabase.map {
            CredentialSync(
                location: $0, base: settings.turn, configuredQuotas: (settings.userQuota, settings.totalQuota),
                logger: logger)
        }
        defer { sync?.stop() }
        // The database's realm options may set max-bps and the quotas.
        let initialTurn = sync?.initialConfiguration() ?? settings.turn
        let quotas = settings.makeQuotas(limits: initialTurn.rateLimits)
        sync?.useQuotas(quotas, limits: initialTurn.rateLimits)
        let engine: Engine
        do {
            // One nonce secret (made when the settings were built) is shared by every worker.
            engine = try Engine(
                config: settings.engine, turn: initialTurn, quotas: quotas, log: logger.engineLog)
        } catch {
            fail("uturnd: cannot start: \(error.description)", logger)
            return 1
        }
        // --metrics-listen (its own thread, after the signal mask above) is
        // bound before the workers start: once uturnd answers a Binding
        // request, every listener it has is up, and a metrics port that
        // cannot be bound stops the start before any client is served.
        // Counters read before the workers run are zeros.
        let metrics: MetricsServer?
        do { metrics = try startMetrics(settings, engine: engine) } catch {
            fail("uturnd: cannot start: \(error.description)", logger)
            return 1
        }
        // --admin-listen: likewise bound before the workers start.
        let admin: AdminServer?
        do { admin = try startAdmin(settings, engine: engine) } catch {
            metrics?.stop()
            fail("uturnd: cannot start: \(error.description)", logger)
            return 1
        }
        // Workers park requests from names not (yet) in the snapshot and ask the credential thread.
        if sync != nil { engine.lookups.enable() }
        do { try engine.start() } catch {
            admin?.stop()
            metrics?.stop()
            fail("uturnd: cannot start: \(error.description)", logger)
            return 1
        }
        defer {
            admin?.stop()
            metrics?.stop()
        }
        sync?.start(engine: engine)
        for line in settings.summary { logger.notice(line) }
        if settings.hasDemoUser, let first = settings.engine.listen.first {
            let host = first.ip.family == .v4 ? "\(first.ip)" : "[\(first.ip)]"
            logger.notice(
                "try it: turnutils_peer -L 127.0.0.1 -p 3480 & turnutils_uclient -u \(Settings.demoUser.0) -w \(Settings.demoUser.1) -e 127.0.0.1 -r 3480 -p \(first.port) -n 10 -l 120 -c -X \(host)")
        }
        logger.notice("uturnd \(BuildInfo.version) running; SIGTERM drains and stops, SIGINT stops now, SIGHUP reloads")
        notifier.ready(status: "relaying")
        var options = reload?.1

        startWaiter(engine)
        var stopping = false
        var requested = false
        while true {
            var signal: Int32 = 0
            guard sigwait(&signals, &signal) == 0 else { continue }
            switch signal {
            case SIGTERM where !stopping:
                logger.notice("SIGTERM: stopping new allocations, draining for up to \(settings.drainSeconds) s")
                notifier.stopping(status: "draining")
                engine.stop(graceful: true, drainSeconds: settings.drainSeconds)
                stopping = true
                requested = true
            case SIGTERM, SIGINT:
                logger.notice("\(signal == SIGINT ? "SIGINT" : "SIGTERM again"): stopping now")
                notifier.stopping()
                engine.stop(graceful: false, drainSeconds: 0)
                stopping = true
                requested = true
            case SIGHUP:
                guard let reloader = reload?.0, let current = options else {
                    logger.warning("SIGHUP: reload is not available in this mode; nothing changed")
                    continue
                }
                notifier.reloading()
                switch reloader.reload(current: settings, currentOptions: current) {
                case .keep(let problem):
                    logger.error("SIGHUP: reload failed, keeping the running configuration: \(problem)")
                case .apply(let outcome):
                    for w in outcome.warnings { logger.warning(w) }
                    for w in outcome.restartNeeded { logger.warning(w) }
                    let q = outcome.settings
                    if let sync {
                        // It composes the database's realm options over these, quotas included.
                        sync.setBase(q.turn, configuredQuotas: (q.userQuota, q.totalQuota))
                    } else {
                        engine.reload(turn: q.turn)
                        if q.userQuota != settings.userQuota || q.totalQuota != settings.totalQuota
                            || q.turn.rateLimits != settings.turn.rateLimits
                        {
                            // The traffic limits in force bound the total (capacity under `refuse`).
                            quotas.setLimits(
                                perUser: q.userQuota,
                                total: AllocationQuotas.total(quota: q.totalQuota, limits: q.turn.rateLimits))
                        }
                    }
                    if let tls = outcome.settings.engine.tls, tls !== settings.engine.tls { engine.reload(tls: tls) }
                    if let dtls = outcome.settings.engine.dtls, dtls !== settings.engine.dtls { engine.reload(dtls: dtls) }
                    settings = outcome.settings
                    options = outcome.options
                    admin?.service.update(settings)
                    logger.notice(outcome.summary)
                }
                notifier.ready(status: stopping ? "draining" : "relaying")
            case SIGUSR1:
                // The waiter's note: every worker has exited.
                if requested {
                    logger.notice("stopped")
                    return 0
                }
                logger.error("the engine stopped without being asked to; see the errors above")
                return 1
            default:
                break
            }
        }
    }

    static func fail(_ message: String, _ logger: Logger) {
        logger.error(message)
        if !logger.isStandardError { printError(message) }
    }

    /// A thread that joins the workers, then tells the main thread (SIGUSR1,
    /// blocked everywhere, so it waits for sigwait).
    static func startWaiter(_ engine: Engine) {
        let box = Unmanaged.passRetained(engine).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let engine = Unmanaged<Engine>.fromOpaque(raw!).takeRetainedValue()
            engine.wait()
            kill(getpid(), SIGUSR1)
            return nil
        }, box)
        if rc == 0 { pthread_detach(thread) } else { Unmanaged<Engine>.fromOpaque(box).release() }
    }
}
