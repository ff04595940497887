import ArgumentParser
import Foundation

/// Where the admin API is and how to authenticate; shared by every verb.
public struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "The admin API (uturnd --admin-listen), default $UTURN_ADMIN_URL or http://127.0.0.1:9642.", valueName: "url"))
    public var url: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp(
        "File holding the bearer token (uturnd's --admin-token-file); default $UTURN_ADMIN_TOKEN_FILE, or the token itself in $UTURN_ADMIN_TOKEN.",
        valueName: "path"))
    public var tokenFile: String?

    @Option(help: ArgumentHelp(
        "For an https:// URL: trust this CA (or self-signed) certificate, PEM, instead of the system's trust store.",
        valueName: "path"))
    public var cacert: String?

    @Flag(help: "For an https:// URL: do not verify the server's certificate (testing only).")
    public var insecure = false

    @Flag(help: "Print the API's JSON instead of a table.")
    public var json = false

    public init() {}

    /// The client these options name, from flags first, then the environment.
    public func client(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AdminClient {
        let url = url ?? environment["UTURN_ADMIN_URL"] ?? "http://127.0.0.1:9642"
        let token: String
        if let path = tokenFile ?? environment["UTURN_ADMIN_TOKEN_FILE"] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw AdminClientError("cannot read the token file \(path)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if token.isEmpty { throw AdminClientError("the token file \(path) is empty") }
        } else if let t = environment["UTURN_ADMIN_TOKEN"], !t.isEmpty {
            token = t.trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            throw AdminClientError(
                "no token: pass --token-file PATH (the file uturnd's --admin-token-file names) or set UTURN_ADMIN_TOKEN_FILE or UTURN_ADMIN_TOKEN")
        }
        var client = try AdminClient(url: url, token: token)
        client.caFile = cacert ?? environment["UTURN_ADMIN_CACERT"]
        client.insecure = insecure
        return client
    }

    /// Sends the request; a non-2xx answer becomes an error with the API's message.
    func call(_ method: String, _ path: String) throws -> AdminResponse {
        let response = try client().request(method, path)
        guard (200..<300).contains(response.status) else {
            let message =
                (try? JSONDecoder().decode([String: String].self, from: Data(response.body)))?["error"]
                ?? response.text.trimmingCharacters(in: .whitespacesAndNewlines)
            switch response.status {
            case 401: throw AdminClientError("401 unauthorized: \(message) (check --token-file)")
            default: throw AdminClientError("\(response.status): \(message)")
            }
        }
        return response
    }

    /// JSON as it came, or the table `render` makes of it.
    func output<T: Decodable>(_ response: AdminResponse, as type: T.Type, _ render: (T) -> String) throws {
        if json {
            print(response.text, terminator: response.text.hasSuffix("\n") ? "" : "\n")
        } else {
            print(render(try decodeAdmin(type, from: response.body)), terminator: "")
        }
    }
}

/// `uturnctl`: a command-line client of uturnd's admin API, with
/// eturnalctl's verbs. The daemon side is `uturnd --admin-listen`.
public struct Uturnctl: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "uturnctl",
        abstract: "Inspect and control a running uturnd through its admin API.",
        discussion: """
            uturnd serves the admin API when started with --admin-listen ADDR:PORT and \
            --admin-token-file PATH; uturnctl sends that token. Tables by default, the API's JSON \
            with --json. Exit status: 0 done, 1 the API refused or could not be reached.
            """,
        subcommands: [Info.self, Sessions.self, Disconnect.self, Drain.self, Reload.self])

    public init() {}

    /// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
    static func encode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(b))
            default:
                let hex = String(b, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" : "") + hex
            }
        }
        return out
    }

    public struct Info: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Server info: version, backend, workers, uptime, state, configuration summary.")
        @OptionGroup public var connection: ConnectionOptions
        public init() {}
        public func run() throws {
            try connection.output(connection.call("GET", "/v1/info"), as: ServerInfo.self, Tables.info)
        }
    }

    public struct Sessions: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "List sessions (allocations), all or one user's, with their traffic each way.")
        @OptionGroup public var connection: ConnectionOptions
        @Argument(help: "Only this user's sessions.") public var user: String?
        public init() {}
        public func run() throws {
            let path = user.map { "/v1/sessions?user=\(Uturnctl.encode($0))" } ?? "/v1/sessions"
            try connection.output(connection.call("GET", path), as: SessionList.self, Tables.sessions)
        }
    }

    public struct Disconnect: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "End all sessions of USER (or one session with --session ID).",
            discussion: "Each allocation is deleted as a Refresh with lifetime 0 would be; a TCP or TLS client's connection is closed too.")
        @OptionGroup public var connection: ConnectionOptions
        @Argument(help: "The user whose sessions end.") public var user: String?
        @Option(help: ArgumentHelp("End only this session (an ID from `uturnctl sessions`).", valueName: "id"))
        public var session: String?
        public init() {}
        public func validate() throws {
            if (user == nil) == (session == nil) { throw ValidationError("name a USER or --session ID (one of them).") }
        }
        public func run() throws {
            let path: String
            if let session { path = "/v1/sessions/\(Uturnctl.encode(session))" } else {
                path = "/v1/sessions?user=\(Uturnctl.encode(user!))"
            }
            try connection.output(connection.call("DELETE", path), as: SessionList.self) { Tables.ended($0, user: user) }
        }
    }

    public struct Drain: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Start a drain (as SIGTERM): no new allocations; uturnd exits when the last ends or --drain-timeout passes.")
        @OptionGroup public var connection: ConnectionOptions
        public init() {}
        public func run() throws {
            try connection.output(connection.call("POST", "/v1/drain"), as: [String: String].self) { ($0["status"] ?? "") + "\n" }
        }
    }

    public struct Reload: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Reload the configuration (as SIGHUP); the outcome is in uturnd's log.")
        @OptionGroup public var connection: ConnectionOptions
        public init() {}
        public func run() throws {
            try connection.output(connection.call("POST", "/v1/reload"), as: [String: String].self) { ($0["status"] ?? "") + "\n" }
        }
    }
}

extension AdminClientError: LocalizedError {
    public var errorDescription: String? { description }
}
