import Glibc

/// What went wrong talking to the admin API, in words for the operator.
public struct AdminClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// An HTTP answer: status code and body.
public struct AdminResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A minimal HTTP/1.1 client for uturnd's admin API: one request per
/// connection (the server closes after answering), plain HTTP over TCP.
public struct AdminClient: Sendable {
    public var host: String
    public var port: UInt16
    public var token: String
    /// Seconds to wait for connecting and for the answer.
    public var timeout: Int = 10

    /// `url`: http://HOST:PORT, with HOST a name, an IPv4 address or [IPv6].
    public init(url: String, token: String) throws(AdminClientError) {
        guard url.hasPrefix("http://") else {
            if url.hasPrefix("https://") {
                throw AdminClientError("--url \(url): the admin API speaks plain HTTP (use an SSH tunnel or a TLS proxy for remote access)")
            }
            throw AdminClientError("--url \(url): expected http://HOST:PORT, such as http://127.0.0.1:9642")
        }
        var rest = url.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let hostPart: Substring
        let portPart: Substring?
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            portPart = after.hasPrefix(":") ? after.dropFirst() : nil
        } else if let colon = rest.lastIndex(of: ":") {
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
        } else {
            hostPart = rest
            portPart = nil
        }
        guard !hostPart.isEmpty else { throw AdminClientError("--url \(url): no host") }
        let port = portPart.map { UInt16($0) } ?? 9642
        guard let port, port != 0 else { throw AdminClientError("--url \(url): the port must be 1...65535") }
        self.host = String(hostPart)
        self.port = port
        self.token = token
    }

    /// Sends `method path` with the bearer token; returns the answer.
    public func request(_ method: String, _ path: String) throws(AdminClientError) -> AdminResponse {
        let fd = try connect()
        defer { close(fd) }
        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let request =
            "\(method) \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nAuthorization: Bearer \(token)\r\n"
            + "Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        var bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeMutableBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw AdminClientError("sending to \(hostHeader): \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw AdminClientError("no answer from \(hostHeader) within \(timeout) s") }
                throw AdminClientError("reading from \(hostHeader): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            answer += chunk[0..<n]
            if answer.count > 64 << 20 { throw AdminClientError("the answer from \(hostHeader) is over 64 MiB") }
        }
        return try Self.parse(answer)
    }

    /// Status and body of a whole HTTP/1.1 response (read to the end).
    static func parse(_ answer: [UInt8]) throws(AdminClientError) -> AdminResponse {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = (0..<max(0, answer.count - 3)).first(where: { Array(answer[$0..<$0 + 4]) == separator }) else {
            throw AdminClientError("malformed HTTP answer (no end of headers)")
        }
        let head = String(decoding: answer[..<end], as: UTF8.self)
        let statusLine = head.prefix { $0 != "\r" }.split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw AdminClientError("malformed HTTP status line: \(head.prefix { $0 != "\r" })")
        }
        var body = Array(answer[(end + 4)...])
        for line in head.split(separator: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length",
                let length = Int(parts[1].trimmingPrefix(" ")), length < body.count
            {
                body = Array(body[..<length])
            }
        }
        return AdminResponse(status: status, body: body)
    }

    private func connect() throws(AdminClientError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, "\(port)", &hints, &list)
        guard rc == 0, let first = list else {
            throw AdminClientError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = ECONNREFUSED
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            p = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                lastError = errno
                continue
            }
            var tv = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
            lastError = errno
            close(fd)
        }
        throw AdminClientError(
            "cannot connect to the admin API at \(host):\(port): \(String(cString: strerror(lastError))) (is uturnd running with --admin-listen?)")
    }
}
