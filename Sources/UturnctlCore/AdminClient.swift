import CCrypto
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
/// connection (the server closes after answering), over TCP, or TLS for an
/// https:// URL (OpenSSL on the blocking socket).
public struct AdminClient: Sendable {
    public var host: String
    public var port: UInt16
    public var token: String
    /// https://: TLS, verifying the server's certificate against `caFile`
    /// (else the system's trust store) and its name, unless `insecure`.
    public var tls = false
    public var caFile: String?
    public var insecure = false
    /// Seconds to wait for connecting and for the answer.
    public var timeout: Int = 10

    /// `url`: http://HOST:PORT or https://HOST:PORT, with HOST a name, an
    /// IPv4 address or [IPv6].
    public init(url: String, token: String) throws(AdminClientError) {
        let scheme: String
        if url.hasPrefix("http://") {
            scheme = "http://"
        } else if url.hasPrefix("https://") {
            scheme = "https://"
            tls = true
        } else {
            throw AdminClientError("--url \(url): expected http://HOST:PORT or https://HOST:PORT, such as http://127.0.0.1:9642")
        }
        var rest = url.dropFirst(scheme.count)
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
        var connection: Connection
        if tls {
            connection = try TLSConnection(fd: fd, host: host, caFile: caFile, insecure: insecure)
        } else {
            connection = PlainConnection(fd: fd)
        }
        defer { connection.close() }
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { connection.send($0) }
            if n < 0 { throw AdminClientError("sending to \(hostHeader): \(connection.lastError)") }
            sent += n
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { connection.receive($0) }
            if n < 0 {
                if errno == EAGAIN && !tls { throw AdminClientError("no answer from \(hostHeader) within \(timeout) s") }
                // A TLS peer that closed without close_notify: what came is checked below.
                if tls && !answer.isEmpty { break }
                throw AdminClientError("reading from \(hostHeader): \(connection.lastError)")
            }
            if n == 0 { break }
            answer += chunk[0..<n]
            if answer.count > 64 << 20 { throw AdminClientError("the answer from \(hostHeader) is over 64 MiB") }
        }
        do { return try Self.parse(answer) } catch {
            // A TLS server answers plain HTTP with a TLS alert or nothing.
            if !tls { throw AdminClientError(error.description + " (if uturnd has --admin-cert, use an https:// URL)") }
            throw error
        }
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
                let length = Int(parts[1].trimmingPrefix(" "))
            {
                guard length <= body.count else {
                    throw AdminClientError("the answer was cut short (\(body.count) of \(length) bytes)")
                }
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

/// One connection's byte stream: plain TCP or TLS over it.
protocol Connection {
    /// Bytes sent, or -1 (see `lastError`).
    mutating func send(_ bytes: UnsafeRawBufferPointer) -> Int
    /// Bytes read, 0 at the end, or -1 (see `lastError`).
    mutating func receive(_ buffer: UnsafeMutableRawBufferPointer) -> Int
    var lastError: String { get }
    mutating func close()
}

struct PlainConnection: Connection {
    let fd: Int32
    var lastError = ""

    mutating func send(_ bytes: UnsafeRawBufferPointer) -> Int {
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { lastError = String(cString: strerror(errno)) }
            return n
        }
    }

    mutating func receive(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { lastError = String(cString: strerror(errno)) }
            return n
        }
    }

    mutating func close() {}
}

/// TLS 1.2+ over the connected blocking socket `fd` (which the caller closes).
/// Verifies the certificate chain (against `caFile`, else the system's
/// trust store) and that it names `host` (an IP address or a DNS name),
/// unless `insecure`.
struct TLSConnection: Connection {
    private var context: OpaquePointer?
    private var ssl: OpaquePointer?
    var lastError = ""

    init(fd: Int32, host: String, caFile: String?, insecure: Bool) throws(AdminClientError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw Self.error("SSL_CTX_new") }
        self.context = context
        guard uturn_tls_ctx_configure(context, TLS1_2_VERSION, 0) == 1 else {
            SSL_CTX_free(context)
            throw Self.error("configuring TLS")
        }
        if insecure {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            let loaded =
                caFile.map { SSL_CTX_load_verify_locations(context, $0, nil) }
                ?? SSL_CTX_set_default_verify_paths(context)
            guard loaded == 1 else {
                SSL_CTX_free(context)
                throw Self.error("cannot load the CA certificates from \(caFile ?? "the system's trust store")")
            }
        }
        guard let ssl = SSL_new(context) else {
            SSL_CTX_free(context)
            throw Self.error("SSL_new")
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        let isIP = Self.isIPAddress(host)
        if !insecure {
            let named = isIP ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) : SSL_set1_host(ssl, host)
            guard named == 1 else {
                close()
                throw Self.error("cannot check the certificate's name against \(host)")
            }
        }
        if !isIP {
            // SSL_set_tlsext_host_name is a macro over SSL_ctrl (SNI).
            _ = host.withCString { name in
                SSL_ctrl(
                    ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name),
                    UnsafeMutableRawPointer(mutating: name))
            }
        }
        guard SSL_connect(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            var why = Self.error("TLS handshake with \(host) failed").description
            if verify != X509_V_OK {
                why += ": certificate \(String(cString: X509_verify_cert_error_string(verify)))"
                why += " (--cacert names the CA or self-signed certificate to trust; --insecure skips the check)"
            }
            close()
            throw AdminClientError(why)
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    static func error(_ what: String) -> AdminClientError {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = uturn_tls_take_errors(&buffer, buffer.count)
        return AdminClientError(n > 0 ? "\(what): \(String(cString: buffer))" : what)
    }

    mutating func send(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let ssl else { return -1 }
        var written = 0
        guard SSL_write_ex(ssl, bytes.baseAddress, bytes.count, &written) == 1 else {
            lastError = Self.error("TLS write failed").description
            return -1
        }
        return written
    }

    mutating func receive(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let ssl else { return -1 }
        var count = 0
        if SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) == 1 { return count }
        if SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN { return 0 }
        lastError = Self.error("TLS read failed").description
        return -1
    }

    mutating func close() {
        if let ssl { SSL_free(ssl) }
        if let context { SSL_CTX_free(context) }
        ssl = nil
        context = nil
    }
}
