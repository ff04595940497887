import NIOHTTP1
import TURN

/// What one admin API request asks for, decided from its method, URI and
/// Authorization header alone (pure, so tests need no server).
///
/// - every path needs `Authorization: Bearer <token>`; without it or with
///   another token: 401, whatever the path (nothing is learnt unauthenticated);
/// - `GET /v1/info`: server info;
/// - `GET /v1/sessions` (`?user=NAME` to filter): the sessions;
/// - `DELETE /v1/sessions?user=NAME`: end all of that user's sessions;
/// - `DELETE /v1/sessions/ID`: end one session (IDs as listed);
/// - `POST /v1/drain`: start a drain (as SIGTERM);
/// - `POST /v1/reload`: reload (as SIGHUP).
enum AdminAction: Equatable {
    case reply(HTTPResponseStatus, String)
    case info
    case sessions(user: String?)
    case disconnectUser(String)
    case disconnectSession(worker: Int, AllocationID)
    case drain
    case reload

    static func route(method: HTTPMethod, uri: String, authorization: String?, token: AdminToken) -> AdminAction {
        guard token.authorizes(header: authorization) else {
            return .reply(.unauthorized, AdminJSON.message("error", "missing or wrong bearer token"))
        }
        let (path, parsed) = split(uri)
        guard let query = parsed else {
            return .reply(.badRequest, AdminJSON.message("error", "malformed query string (use %XX escapes and UTF-8)"))
        }
        let notAllowed = AdminAction.reply(.methodNotAllowed, AdminJSON.message("error", "method not allowed"))
        switch path {
        case "/v1/info":
            return method == .GET ? .info : notAllowed
        case "/v1/sessions":
            let user = query["user"]
            if method == .GET { return .sessions(user: user) }
            guard method == .DELETE else { return notAllowed }
            guard let user, !user.isEmpty else {
                return .reply(
                    .badRequest,
                    AdminJSON.message("error", "name the user to disconnect: DELETE /v1/sessions?user=NAME"))
            }
            return .disconnectUser(user)
        case "/v1/drain":
            return method == .POST ? .drain : notAllowed
        case "/v1/reload":
            return method == .POST ? .reload : notAllowed
        default:
            if path.hasPrefix("/v1/sessions/") {
                guard method == .DELETE else { return notAllowed }
                guard let (w, id) = AdminJSON.parseSessionID(path.dropFirst("/v1/sessions/".count)) else {
                    return .reply(.badRequest, AdminJSON.message("error", "a session id looks like 0.12.3"))
                }
                return .disconnectSession(worker: w, id)
            }
            return .reply(.notFound, AdminJSON.message("error", "no such endpoint; see docs/administration.md"))
        }
    }

    /// The path and the decoded query parameters (the last of a repeated
    /// name wins); nil parameters when one cannot be decoded.
    static func split(_ uri: String) -> (path: String, query: [String: String]?) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecoded(parts[0]) else { return (String(uri[..<q]), nil) }
            if parts.count == 1 {
                query[name] = ""
                continue
            }
            guard let value = percentDecoded(parts[1]) else { return (String(uri[..<q]), nil) }
            query[name] = value
        }
        return (String(uri[..<q]), query)
    }

    /// `%XX` decoded ('+' stays '+': usernames may hold it); nil when
    /// malformed or not UTF-8.
    static func percentDecoded(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hexValue(it.popFirst()!), let lo = hexValue(it.popFirst()!) else {
                    return nil
                }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
