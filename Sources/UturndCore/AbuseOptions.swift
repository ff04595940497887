import ArgumentParser

/// What a flood of junk or failed requests may cost, and where new
/// allocations go when this server should not take them (ALTERNATE-SERVER).
/// All of it changes on SIGHUP.
public struct AbuseOptions: ParsableArguments {
    @Option(name: .customLong("failed-request-rate"), help: ArgumentHelp("Refusals (400, 401, 438) per second one source address (IPv4, or IPv6 /64) with no allocation may get, burst twice that; past it, its requests are dropped unanswered and without an HMAC check. The same rate bounds, per source, datagrams no one answers (ChannelData with no allocation, unparsable bytes) before --kernel-source-filter drops them in the kernel. An allocation's own requests are never limited. 0: no limit.", valueName: "n"))
    public var failedRequestRate: Int = 200

    @Option(name: .customLong("failed-request-rate-total"), help: ArgumentHelp("Refusals per second the whole server sends to clients with no allocation (shared evenly by the workers), burst twice that: what bounds a flood from spoofed addresses. 0: no limit.", valueName: "n"))
    public var failedRequestRateTotal: Int = 20000

    @Option(name: .customLong("binding-request-rate"), help: ArgumentHelp("Binding requests per second answered to one source address (IPv4, or IPv6 /64) with no allocation, burst twice that; past it they are dropped. 0: no limit.", valueName: "n"))
    public var bindingRequestRate: Int = 200

    @Option(name: .customLong("alternate-server"), help: ArgumentHelp("Another TURN server (ip, ip:port, [ipv6]:port; port 3478 if left out) to send new Allocates to with 300 ALTERNATE-SERVER, as --alternate-server-policy says. Repeat for several: they take turns, among those of the client's address family.", valueName: "address"))
    public var alternateServers: [String] = []

    @Option(name: .customLong("alternate-server-policy"), help: ArgumentHelp("When Allocates are redirected to the --alternate-server list: always (every Allocate, as coturn does), draining (only while draining after SIGTERM, instead of 508), or allocations:N (when this server holds N allocations or more, and while draining).", valueName: "policy"))
    public var alternateServerPolicy: String = "always"

    @Option(name: .customLong("nonce-secret-file"), help: ArgumentHelp("A file holding a secret (16 bytes or more, e.g. openssl rand -hex 32) shared by a fleet of uturnd: each accepts the nonces the others issue, so a client redirected by ALTERNATE-SERVER keeps its nonce (Chromium does, and gives up on 438). Nonce times are then wall-clock: the fleet's clocks must agree within 60 s. Re-read on SIGHUP.", valueName: "path"))
    public var nonceSecretFile: String?

    public init() {}
}
