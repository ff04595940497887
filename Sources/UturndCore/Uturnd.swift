import ArgumentParser
import Glibc

/// The `uturnd` command: flags (and `-c` config file), checks, then the daemon.
public struct Uturnd: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "uturnd",
        abstract: "A TURN relay server (RFC 8656) whose data path runs on io_uring.",
        discussion: """
            uturn relays UDP for WebRTC and VoIP clients that authenticate with long-term \
            credentials: static users (--user) or TURN REST API usernames (--use-auth-secret). \
            Option names and values follow coturn where coturn has the same option, so a coturn \
            command line or turnserver.conf mostly carries over; coturn options uturn lacks are \
            reported by name.

            Config file (-c): one option per line, as name=value, name value, or a bare name for a \
            flag; '#' starts a comment; repeat a line for a repeatable option. Options on the command \
            line override the file; a repeatable option given on the command line replaces the file's list.

            Signals: SIGTERM drains (see --drain-timeout) and exits, SIGINT exits at once, SIGHUP \
            re-reads the config file with the same command line and applies users, REST secrets, \
            peer policy, lifetimes and the TLS certificate and key without dropping allocations \
            (channels the peer policy now denies leave the kernel fast path; a bad file is logged and \
            changes nothing; listening, relay and engine options need a restart). Under systemd \
            (NOTIFY_SOCKET) it reports READY, RELOADING and STOPPING. Needs Linux 5.19 or newer \
            with io_uring enabled.
            """,
        version: BuildInfo.description
    )

    @Option(name: [.customShort("c"), .customLong("config")],
            help: ArgumentHelp("Read options from this coturn-style config file first.", valueName: "path"))
    public var config: String?

    @Flag(name: .customLong("check-config"),
          help: "Check the options and config file, print a summary, and exit (0: fine, 1: a problem).")
    public var checkConfig = false

    @OptionGroup(title: "Listening and relay") public var listening: ListeningOptions
    @OptionGroup(title: "Credentials") public var auth: AuthOptions
    @OptionGroup(title: "Peers") public var peers: PeerOptions
    @OptionGroup(title: "Lifetimes and quotas") public var limits: LimitOptions
    @OptionGroup(title: "TCP, TLS and DTLS") public var streams: StreamOptions
    @OptionGroup(title: "STUN and TURN service") public var service: ServiceOptions
    @OptionGroup(title: "Request limits and redirects") public var abuse: AbuseOptions
    @OptionGroup(title: "Logging") public var logging: LoggingOptions
    @OptionGroup(title: "Admin API") public var admin: AdminOptions
    @OptionGroup(title: "Engine (io_uring)") public var engine: EngineOptions
    @OptionGroup(title: "DTLS switch") public var compatibility: CompatibilityOptions

    public init() {}

    public func validate() throws {
        // Cross-flag checks live in Settings so --check-config and start-up
        // report the same thing; --check-config reports them itself (exit 1).
        if !checkConfig { _ = try Settings(self) }
    }

    public mutating func run() throws {
        let status = start(warnings: [])
        if status != 0 { throw ExitCode(status) }
    }

    /// Builds the settings, opens the log, then checks or runs. `warnings`
    /// are the config file's ignored options; `commandLine` (the arguments
    /// after the program name) enables SIGHUP reload.
    public func start(warnings: [String], commandLine: [String]? = nil, locate: (String) -> String = { $0 }) -> Int32 {
        let onlineCPUs = Settings.onlineCPUs()
        let settings: Settings
        do { settings = try Settings(self, onlineCPUs: onlineCPUs) } catch {
            printError("uturnd: configuration error: \(locate(error.message))")
            return 1
        }
        let logger: Logger
        do { logger = try Logger(level: settings.logLevel, destination: settings.logDestination) } catch {
            printError("uturnd: \(error.message)")
            return 1
        }
        if checkConfig {
            for w in warnings + settings.warnings { print("warning: \(w)") }
            for n in settings.notices { print("note: \(n)") }
            for line in settings.summary { print(line) }
            print("configuration OK\(self.config.map { " (\($0) and the command line)" } ?? "")")
            return 0
        }
        logger.notice("uturnd \(BuildInfo.description) starting")
        for w in warnings + settings.warnings { logger.warning(w) }
        for n in settings.notices { logger.notice(n) }
        let reload = commandLine.map { (Reloader(commandLine: $0, onlineCPUs: onlineCPUs), self) }
        return Daemon.run(settings, logger: logger, reload: reload)
    }

    /// Entry point: assembles config file and command line, parses, runs, exits.
    /// (Shadows `ParsableCommand.main()`, which cannot see the config file.)
    public static func main() {
        let commandLine = Array(CommandLine.arguments.dropFirst())
        let checking = commandLine.contains("--check-config")
        var launch: LaunchArguments?
        do {
            let assembled = try LaunchArguments.assemble(commandLine: commandLine)
            launch = assembled
            let command = try parseAsRoot(assembled.arguments)
            guard let uturnd = command as? Uturnd else {
                var other = command
                try other.run()
                Self.exit()
            }
            Self.exit(
                withError: ExitCode(
                    uturnd.start(warnings: assembled.warnings, commandLine: commandLine, locate: assembled.located)))
        } catch {
            let code = exitCode(for: error)
            if code != .success, let launch {
                let text = message(for: error)
                let located = launch.located(text)
                if checking || located != text {
                    // A bad value from the config file: say where it is.
                    printError("uturnd: configuration error: \(located)")
                    Glibc.exit(checking ? 1 : code.rawValue)
                }
            } else if checking, code != .success {
                printError("uturnd: configuration error: \(message(for: error))")
                Glibc.exit(1)
            }
            Self.exit(withError: error)
        }
    }
}
