import Glibc
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Relay
import STUN

/// Why the metrics endpoint could not start.
public struct MetricsServerError: Error, CustomStringConvertible {
    public var description: String
}

/// The `--metrics-listen` endpoint: swift-nio's HTTP/1.1 server on one event
/// loop thread of its own (the control path, never a worker ring).
/// - `GET /metrics` (or `HEAD`): 200 with the text `render()` returns
///   (Prometheus text exposition format 0.0.4);
/// - another path: 404; another method on /metrics: 405; a malformed request: 400;
/// - one request per connection (`Connection: close`); a connection that
///   sends more than `maxRequestBytes` is closed, and so is one idle for
///   `idleTimeout`.
///
/// Create it after the daemon has blocked its signals: the event loop
/// thread inherits the mask, so SIGTERM and SIGINT still reach sigwait.
public final class MetricsServer: Sendable {
    /// The address bound (with the port the kernel chose when asked for 0).
    public let address: TransportAddress
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel

    public static let maxRequestBytes = 8192

    /// Binds, listens and serves from now on; throws if the address cannot be bound.
    public init(
        listen: TransportAddress, idleTimeout: TimeAmount = .seconds(5),
        render: @escaping @Sendable () -> String
    ) throws(MetricsServerError) {
        (group, channel) = try MetricsServer.serveHTTP(on: listen, flag: "--metrics-listen", idleTimeout: idleTimeout) {
            pipeline in try pipeline.addHandler(MetricsHTTPHandler(render: render))
        }
        self.address = TransportAddress(ip: listen.ip, port: UInt16(channel.localAddress?.port ?? Int(listen.port)))
    }

    /// One HTTP/1.1 listener on an event loop thread of its own, shared by
    /// `/metrics` and the admin API: a size limit and an idle timeout on
    /// every connection, then `handlers` (behind `beforeHTTP`'s, e.g. TLS).
    static func serveHTTP(
        on listen: TransportAddress, flag: String, idleTimeout: TimeAmount,
        beforeHTTP: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void = { _ in },
        handlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
    ) throws(MetricsServerError) -> (MultiThreadedEventLoopGroup, any Channel) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try beforeHTTP(pipeline)
                    try pipeline.addHandler(RequestSizeLimit(limit: Self.maxRequestBytes))
                    try pipeline.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try handlers(pipeline)
                }
            }
        do {
            let socketAddress = try NIOCore.SocketAddress(ipAddress: "\(listen.ip)", port: Int(listen.port))
            return (group, try bootstrap.bind(to: socketAddress).wait())
        } catch {
            try? group.syncShutdownGracefully()
            throw MetricsServerError(description: "cannot listen on tcp \(listen) for \(flag): \(error)")
        }
    }

    /// Stops serving and ends the event loop thread.
    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Closes a connection that sends more than `limit` bytes (request line,
/// headers and any body together): a scrape request is a few hundred bytes.
final class RequestSizeLimit: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let limit: Int
    var seen = 0

    init(limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        seen += unwrapInboundIn(data).readableBytes
        if seen > limit {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

/// Answers one request, then closes the connection.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let render: @Sendable () -> String
    var head: HTTPRequestHead?
    var answered = false

    init(render: @escaping @Sendable () -> String) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head, !answered else { return }
            answered = true
            let (status, body, contentType) = Self.answer(method: head.method, uri: head.uri, render: render)
            respond(context, status: status, body: body, contentType: contentType, sendBody: head.method != .HEAD)
        }
    }

    /// Status, body and content type for a request. Pure, for tests.
    static func answer(method: HTTPMethod, uri: String, render: () -> String) -> (HTTPResponseStatus, String, String) {
        let path = uri.prefix { $0 != "?" }
        guard path == "/metrics" else { return (.notFound, "not found; metrics are at /metrics\n", "text/plain; charset=utf-8") }
        guard method == .GET || method == .HEAD else {
            return (.methodNotAllowed, "use GET\n", "text/plain; charset=utf-8")
        }
        return (.ok, render(), MetricsExposition.contentType)
    }

    func respond(
        _ context: ChannelHandlerContext, status: HTTPResponseStatus, body: String, contentType: String, sendBody: Bool
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if sendBody {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }

    /// A malformed request (the HTTP error handler has answered 400 already).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

extension MetricsSample {
    /// The engine's counters now: each worker's table, as it last published it.
    public init(engine: Engine) {
        var workers = (0..<engine.workerCount).map { w in
            Dictionary(engine.counters(ofWorker: w).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        }
        // The kernel program's own counts are the engine's, not a worker's:
        // they join worker 0's table (the families that show them are totals).
        if let passed = engine.offloadPassed, !workers.isEmpty {
            workers[0]["offloadPassedLength"] = passed.length
            workers[0]["offloadPassedExpired"] = passed.expired
            workers[0]["offloadPassedLocalOrigin"] = passed.localOrigin
            workers[0]["offloadPassedUnfit"] = passed.unfit
            workers[0]["offloadPassedNoNextHop"] = passed.noNextHop
        }
        if let drops = engine.kernelSourceDrops, !workers.isEmpty {
            workers[0]["rateLimitedKernelDrops"] = drops
        }
        self.init(workers: workers)
    }

    /// When this process started, in seconds since the Unix epoch: the boot
    /// time (`btime` in /proc/stat) plus the process's start in clock ticks
    /// after boot (field 22 of /proc/self/stat); now, if those cannot be read.
    public static func processStartTime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        guard let stat = readSmallFile("/proc/self/stat"), let boot = readSmallFile("/proc/stat"),
            let close = stat.lastIndex(of: ")")
        else { return now }
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard fields.count > 19, let ticks = Double(fields[19]), ticksPerSecond > 0,
            let line = boot.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
            let btime = Double(line.dropFirst(6).trimmingPrefix(" "))
        else { return now }
        return btime + ticks / ticksPerSecond
    }
}

extension Daemon {
    /// Starts the `--metrics-listen` endpoint (nil when the option is not
    /// given) and makes its registry swift-metrics' backend for this process.
    static func startMetrics(_ settings: Settings, engine: Engine) throws(MetricsServerError) -> MetricsServer? {
        guard let listen = settings.metricsListen else { return nil }
        let exposition = MetricsExposition(
            workers: engine.workerCount, version: BuildInfo.version, startTime: MetricsSample.processStartTime(),
            backend: engine.backend)
        let server = try MetricsServer(listen: listen) { exposition.render(MetricsSample(engine: engine)) }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: exposition.registry))
        return server
    }
}

/// A small text file read whole (procfs files report size 0, so read to the end).
private func readSmallFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 1 << 20 {
        let n = fread(&chunk, 1, chunk.count, file)
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
