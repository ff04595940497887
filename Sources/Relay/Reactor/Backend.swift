import Glibc
import URing

/// What `--backend` asks for.
public enum BackendChoice: String, Sendable, CaseIterable {
    /// io_uring when it can be set up and probed, else epoll.
    case auto
    case ioUring = "io_uring"
    case epoll
}

/// The completion source every worker of an engine runs on (Reactor.swift).
public enum Backend: String, Sendable {
    case ioUring = "io_uring"
    case epoll

    /// The backend for `config`, decided once at start for every worker,
    /// and, when `auto` fell back to epoll, why (one line for the log).
    /// An explicit `io_uring` is not checked here: the workers' own setup
    /// reports its failure with the fix, as before.
    static func choose(_ config: EngineConfig) -> (Backend, fallback: String?) {
        switch config.backend {
        case .ioUring: return (.ioUring, nil)
        case .epoll: return (.epoll, nil)
        case .auto:
            if config.simulateRingFailure {
                return (.epoll, Self.reason(.notPermitted, call: "io_uring_setup (simulated)"))
            }
            do throws(URingError) {
                let options = config.ringOptions
                _ = try Ring(options: options)
                let features = try KernelFeatures.probe(options: options)
                guard features.providedBufferRings else {
                    return (.epoll, "io_uring has no provided buffer rings here (needs Linux 5.19+); using epoll")
                }
                return (.ioUring, nil)
            } catch {
                return (.epoll, Self.reason(error.errno, call: error.call))
            }
        }
    }

    /// "io_uring unavailable (io_uring_setup: EPERM: ...); using epoll".
    static func reason(_ errno: Errno, call: String) -> String {
        let why: String
        switch errno.rawValue {
        case EPERM: why = "EPERM: blocked by a seccomp profile (Docker, containerd) or sysctl kernel.io_uring_disabled"
        case ENOSYS: why = "ENOSYS: no io_uring in this kernel or runtime (Podman, CRI-O, gVisor)"
        case ENOMEM: why = "ENOMEM: locked-memory limit too low (raise LimitMEMLOCK / ulimit -l)"
        default: why = URingError.explainUnavailable(errno)
        }
        return "io_uring unavailable (\(call): \(errno)): \(why); using epoll"
    }
}

extension EngineConfig {
    /// The ring the workers (and the `auto` probe) set up.
    var ringOptions: RingOptions {
        var options = RingOptions()
        options.submissionEntries = sqEntries
        options.completionEntries = cqEntries
        if noDeferTaskrun { options.highestRung = .singleIssuerCoopTaskrun }
        if noSingleIssuer { options.highestRung = .coopTaskrun }
        options.allowMultishotReceive = !singleShotReceive
        return options
    }
}
