import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import Relay
import STUN
import Synchronization
import TURN

/// What the admin API serves from, shared by its connections: the engine,
/// the token and the parts of the settings it shows (both replaced on
/// SIGHUP through `update`), and how it starts a drain or a reload.
public final class AdminService: Sendable {
    let engine: Engine
    let state: Mutex<(token: AdminToken, realm: String, summary: [String], tls: TLSServerContext?)>
    let startTime: timespec
    /// Sends the daemon a signal (drain: SIGTERM, reload: SIGHUP), so the
    /// API takes exactly the path an operator's `kill` would.
    let signal: @Sendable (Int32) -> Void
    /// How long a request waits for the workers' answers.
    let workerTimeout: TimeAmount

    public init(
        engine: Engine, settings: Settings, token: AdminToken, workerTimeout: TimeAmount = .seconds(2),
        signal: @escaping @Sendable (Int32) -> Void = { kill(getpid(), $0) }
    ) {
        self.engine = engine
        state = Mutex((token, settings.turn.credentials.realm, settings.summary, settings.adminTLS))
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        startTime = now
        self.signal = signal
        self.workerTimeout = workerTimeout
    }

    /// After a reload: the new token, certificate and key (both re-read),
    /// realm and summary. Open connections keep their certificate.
    public func update(_ settings: Settings) {
        state.withLock { s in
            if let token = settings.adminToken { s.token = token }
            if let tls = settings.adminTLS { s.tls = tls }
            s.realm = settings.turn.credentials.realm
            s.summary = settings.summary
        }
    }

    var token: AdminToken { state.withLock { $0.token } }
    /// The certificate and key new connections get (nil: plain HTTP).
    var tls: TLSServerContext? { state.withLock { $0.tls } }

    /// Carries out `action`; `respond` gets the status and JSON body once,
    /// on any thread. `schedule` arms the timeout for the workers' answers.
    /// `respondThen` answers, then runs its last argument once the answer is
    /// written: a drain can stop the process, so its signal waits for that.
    /// The workers' answers arrive on a worker thread: `hop` moves the work
    /// of rendering them to the server's own thread, so no worker spends
    /// time on JSON.
    func perform(
        _ action: AdminAction, schedule: (TimeAmount, @escaping @Sendable () -> Void) -> Void,
        hop: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
        respondThen: @escaping @Sendable (HTTPResponseStatus, String, @escaping @Sendable () -> Void) -> Void
    ) {
        let respond: @Sendable (HTTPResponseStatus, String) -> Void = { respondThen($0, $1, {}) }
        let realm = state.withLock { $0.realm }
        switch action {
        case .reply(let status, let body):
            respond(status, body)
        case .info:
            respond(.ok, AdminJSON.info(info()))
        case .sessions(let user):
            let replies = engine.admin(.sessions(user: user)) { result in
                hop { respond(.ok, AdminJSON.sessions(result, realm: realm)) }
            }
            schedule(workerTimeout) { replies.expire() }
        case .disconnectUser(let user):
            let replies = engine.admin(.disconnectUser(user)) { result in
                hop { respond(.ok, AdminJSON.sessions(result, realm: realm, key: "ended")) }
            }
            schedule(workerTimeout) { replies.expire() }
        case .disconnectSession(let worker, let id):
            guard worker < engine.workerCount else {
                respond(.notFound, AdminJSON.message("error", "no session \(AdminJSON.sessionID(worker: worker, id))"))
                return
            }
            let replies = engine.admin(.disconnectSession(id), worker: worker) { result in
                hop { Self.ended(result, worker: worker, id: id, realm: realm, respond: respond) }
            }
            schedule(workerTimeout) { replies.expire() }
        case .drain:
            let signal = self.signal
            respondThen(
                .accepted,
                AdminJSON.message(
                    "status",
                    "drain started (as SIGTERM): no new allocations; uturnd exits when the last one ends or --drain-timeout passes"
                )
            ) { signal(SIGTERM) }
        case .reload:
            let signal = self.signal
            respondThen(.accepted, AdminJSON.message("status", "reload requested (as SIGHUP); its outcome is logged")) {
                signal(SIGHUP)
            }
        }
    }

    /// The answer to ending one session: 404 when no worker had it.
    static func ended(
        _ result: AdminResult, worker: Int, id: AllocationID, realm: String,
        respond: @Sendable (HTTPResponseStatus, String) -> Void
    ) {
        if result.sessions.isEmpty && result.missing.isEmpty {
            respond(.notFound, AdminJSON.message("error", "no session \(AdminJSON.sessionID(worker: worker, id))"))
        } else {
            respond(.ok, AdminJSON.sessions(result, realm: realm, key: "ended"))
        }
    }

    func info() -> AdminJSON.Info {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (realm, summary) = state.withLock { ($0.realm, $0.summary) }
        let created = engine.counter("allocationsCreated") ?? 0
        let ended = (engine.counter("allocationsDeleted") ?? 0) &+ (engine.counter("allocationsExpired") ?? 0)
        return AdminJSON.Info(
            version: BuildInfo.version, backend: engine.backend, workers: engine.workerCount,
            uptimeSeconds: now.tv_sec - startTime.tv_sec, draining: engine.isDraining,
            allocations: created >= ended ? created - ended : 0, realm: realm, config: summary)
    }
}

/// The `--admin-listen` endpoint: swift-nio's HTTP/1.1 server on one event
/// loop thread of its own, like `MetricsServer` (the control path; workers
/// are reached only through their inboxes). One request per connection.
public final class AdminServer: Sendable {
    public let address: TransportAddress
    public let service: AdminService
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel

    public init(listen: TransportAddress, service: AdminService, idleTimeout: TimeAmount = .seconds(5))
        throws(MetricsServerError)
    {
        let tls = service.tls
        (group, channel) = try MetricsServer.serveHTTP(
            on: listen, flag: "--admin-listen", idleTimeout: idleTimeout,
            beforeHTTP: { pipeline in if let tls { try pipeline.addHandler(AdminTLSHandler(context: tls)) } },
            handlers: { pipeline in try pipeline.addHandler(AdminHTTPHandler(service: service)) })
        self.service = service
        self.address = TransportAddress(ip: listen.ip, port: UInt16(channel.localAddress?.port ?? Int(listen.port)))
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers one admin request, then closes the connection.
final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let service: AdminService
    var head: HTTPRequestHead?
    var answered = false

    init(service: AdminService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head, !answered else { return }
            answered = true
            let action = AdminAction.route(
                method: head.method, uri: head.uri, authorization: head.headers.first(name: "Authorization"),
                token: service.token)
            let loop = context.eventLoop
            let bound = NIOLoopBound(context, eventLoop: loop)
            let once = NIOLoopBoundBox(false, eventLoop: loop)
            service.perform(
                action, schedule: { delay, task in loop.scheduleTask(in: delay, task) }, hop: { loop.execute($0) },
                respondThen: { status, body, then in
                    loop.execute {
                        guard !once.value else { return }
                        once.value = true
                        Self.respond(bound.value, status: status, body: body, then: then)
                    }
                })
        }
    }

    static func respond(
        _ context: ChannelHandlerContext, status: HTTPResponseStatus, body: String,
        then: @escaping @Sendable () -> Void = {}
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        if status == .unauthorized { headers.add(name: "WWW-Authenticate", value: "Bearer realm=\"uturn admin\"") }
        context.write(
            NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
            promise: nil)
        context.write(
            NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(string: body)))),
            promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
            bound.value.close(promise: nil)
            then()
        }
    }

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

extension Daemon {
    /// Starts the `--admin-listen` endpoint (nil when the option is not given).
    static func startAdmin(_ settings: Settings, engine: Engine) throws(MetricsServerError) -> AdminServer? {
        guard let listen = settings.adminListen, let token = settings.adminToken else { return nil }
        return try AdminServer(listen: listen, service: AdminService(engine: engine, settings: settings, token: token))
    }
}
