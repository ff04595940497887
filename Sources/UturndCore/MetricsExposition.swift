import Prometheus
import Synchronization

/// What one scrape shows, as plain data: the exposition never sees the
/// engine, so tests feed it made-up values.
///
/// Counter names are the engine's (`WorkerCounters.Field` as the engine
/// spells them: `packetsToPeers`, `dropsNoRoute`, ...). A name missing from
/// a worker's table reads as 0; names the exposition does not know are ignored.
public struct MetricsSample: Sendable {
    /// One table per worker, in worker order (`worker="0"`, `"1"`, ...).
    public var workers: [[String: UInt64]]

    public init(workers: [[String: UInt64]]) { self.workers = workers }

    /// One counter summed over workers (wrapping, as the workers' own counters do).
    public func total(_ name: String) -> UInt64 {
        workers.reduce(0) { $0 &+ ($1[name] ?? 0) }
    }
}

/// The Prometheus metrics of one uturnd, in swift-prometheus's registry:
/// every metric is created once, at init, with fixed labels (direction,
/// source, reason, code, event, worker, version), never one per user,
/// allocation or address. `render(_:)` copies a sample's values in and returns the text
/// exposition format 0.0.4 (`# HELP` and `# TYPE` once per family).
///
/// The engine's counters are totals that its workers publish once a second;
/// they are copied into the registry's counters as they are (reset, then
/// added), under a lock, so scrapes never see half a copy.
public final class MetricsExposition: Sendable {
    /// The Content-Type of the rendered text.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    static let lag = "Workers publish their counters once a second, so values lag by up to 1 s."

    /// A family of counters: each series is one engine counter, summed over
    /// workers (`label`: one series per label value) or one per worker.
    struct Family {
        var name: String
        var help: String
        var label: String?
        var series: [(value: String, field: String)]
        var perWorker = false
    }

    static let families: [Family] = [
        Family(name: "uturn_allocations_created_total", help: "Allocations created.", series: [("", "allocationsCreated")]),
        Family(
            name: "uturn_allocations_deleted_total", help: "Allocations deleted by their client (Refresh with lifetime 0).",
            series: [("", "allocationsDeleted")]),
        Family(
            name: "uturn_allocations_expired_total", help: "Allocations whose lifetime ran out.",
            series: [("", "allocationsExpired")]),
        Family(
            name: "uturn_allocations_moved_total",
            help: "Allocations moved to a new client 5-tuple with a mobility ticket (RFC 8016).",
            series: [("", "allocationsMoved")]),
        Family(
            name: "uturn_allocations_moved_across_workers_total",
            help: "Of those moves, the ones whose new 5-tuple reached another worker than the allocation's, which handed the request over.",
            series: [("", "allocationsMovedAcross")]),
        Family(
            name: "uturn_received_packets_total",
            help: "Datagrams received: source client on the listening ports (STUN and ChannelData), source peer on relay ports.",
            label: "source", series: [("client", "packetsFromClients"), ("peer", "packetsFromPeers")]),
        Family(
            name: "uturn_received_bytes_total", help: "Bytes (UDP payload) received in those datagrams.",
            label: "source", series: [("client", "bytesFromClients"), ("peer", "bytesFromPeers")]),
        Family(
            name: "uturn_relayed_packets_total",
            help: "Datagrams relayed: client_to_peer (from Send indications and ChannelData), peer_to_client.",
            label: "direction", series: [("client_to_peer", "packetsToPeers"), ("peer_to_client", "packetsToClients")]),
        Family(
            name: "uturn_relayed_bytes_total",
            help: "Bytes (UDP payload) relayed: application data to peers; ChannelData or Data indications to clients.",
            label: "direction", series: [("client_to_peer", "bytesToPeers"), ("peer_to_client", "bytesToClients")]),
        Family(
            name: "uturn_dropped_packets_total",
            help: "Datagrams dropped, by reason: no_route (no allocation, permission or channel), malformed, truncated (larger than a receive buffer), no_send_op (send slots used up, see --send-ops), send_error (the kernel refused the send), too_big (a peer datagram too big for the client's transport: a DTLS record carries at most 16 KiB).",
            label: "reason",
            series: [
                ("no_route", "dropsNoRoute"), ("malformed", "dropsMalformed"), ("truncated", "dropsTruncated"),
                ("no_send_op", "dropsNoSendOp"), ("send_error", "dropsSendError"), ("too_big", "dropsTooBig"),
            ]),
        Family(
            name: "uturn_policy_dropped_total",
            help: "Packets dropped and new peers refused by the traffic limits, by reason: bps (--max-bps), user_bps (--user-max-bps), capacity (the allocation's share of --bps-capacity), pps (--max-pps), peer_rate (new peer addresses refused with 508 by --max-new-peers-per-second).",
            label: "reason",
            series: [
                ("bps", "policyDropsBps"), ("user_bps", "policyDropsUserBps"), ("capacity", "policyDropsCapacity"),
                ("pps", "policyDropsPps"), ("peer_rate", "policyRefusedPeers"),
            ]),
        Family(
            name: "uturn_policy_paused_total",
            help: "Times a byte stream stopped reading because its allocation's byte rate (--max-bps, --user-max-bps, --bps-capacity) was used up, by direction: to_peer (a TCP or TLS client connection, or an RFC 6062 client data connection), to_client (an RFC 6062 peer connection). Nothing is dropped: reading resumes when the bucket refills.",
            label: "direction",
            series: [("to_peer", "policyPausedToPeer"), ("to_client", "policyPausedToClient")]),
        Family(
            name: "uturn_refused_requests_total",
            help: "Requests answered with an error, by code: 401 here means wrong credentials on a signed request (the unsigned first-step challenges are uturn_auth_challenges_total), 403 forbidden peer, 438 stale nonce, 486 quota, 508 no capacity, other: any other code.",
            label: "code",
            series: [
                ("400", "refused400"), ("401", "refused401"), ("403", "refused403"), ("437", "refused437"),
                ("438", "refused438"), ("441", "refused441"), ("486", "refused486"), ("508", "refused508"),
                ("other", "refusedOther"),
            ]),
        Family(
            name: "uturn_rate_limited_requests_total",
            help: "Requests from clients with no allocation dropped unanswered by the per-source limits (--failed-request-rate, --failed-request-rate-total, --binding-request-rate), by reason: unauthenticated (no credentials, or a request that would get 400), credentials (signed; dropped before the HMAC check), malformed (unparsable, would get 400), binding (over the Binding limit).",
            label: "reason",
            series: [
                ("unauthenticated", "rateLimitedUnauthenticated"), ("credentials", "rateLimitedCredentials"),
                ("malformed", "rateLimitedMalformed"), ("binding", "rateLimitedBinding"),
            ]),
        Family(
            name: "uturn_rate_limited_kernel_drops_total",
            help: "Datagrams the kernel source filter (--kernel-source-filter) dropped before they reached a UDP listening socket: from a client address and port whose request the per-source limits had just dropped, until its bucket refills; and from a client address and port with no allocation that sent more datagrams no one answers (ChannelData with no allocation, unparsable bytes) than --failed-request-rate, those of its datagrams that do not start with a STUN header. Not counted in uturn_rate_limited_requests_total or uturn_dropped_packets_total.",
            series: [("", "rateLimitedKernelDrops")]),
        Family(
            name: "uturn_rate_limited_kernel_blocks_total",
            help: "Blocks the workers wrote into the kernel source filter (one per client address and port per block; a block lasts until the source's bucket refills, 1 ms to 1 s), and map writes that failed (blocks, and the lifting of a block when its 5-tuple gets an allocation).",
            label: "result",
            series: [("written", "kernelSourceBlocks"), ("failed", "kernelSourceBlockFailures")]),
        Family(
            name: "uturn_auth_challenges_total",
            help: "401 challenges (REALM and NONCE) sent to unsigned requests: the normal first step of a login.",
            series: [("", "challenges")]),
        Family(
            name: "uturn_stun_requests_total",
            help: "STUN requests handled (Binding, Allocate, Refresh, CreatePermission, ChannelBind).",
            series: [("", "stunRequests")]),
        // TURN over TCP and TLS.
        Family(
            name: "uturn_stream_connections_total",
            help: "TCP and TLS connections (clients, and RFC 6062 connections to and from peers), by event: accepted (or connected), refused (--tcp-connections, --tcp-connections-per-ip, no certificate), closed (by either side, for any reason), timed_out (idle, stalled reader or unfinished TLS handshake; also counted in closed).",
            label: "event",
            series: [
                ("accepted", "streamAccepted"), ("refused", "streamRefused"), ("closed", "streamClosed"),
                ("timed_out", "streamTimeouts"),
            ]),
        Family(
            name: "uturn_stream_bytes_total",
            help: "Bytes over TCP and TLS client connections as the socket sees them (TLS: ciphertext in, plaintext out).",
            label: "direction", series: [("received", "bytesFromStreams"), ("queued", "bytesToStreams")]),
        Family(
            name: "uturn_stream_dropped_messages_total",
            help: "Messages for a TCP or TLS client dropped whole because its send queue was full (a slow reader; see --tcp-send-queue).",
            series: [("", "streamDropsFull")]),
        Family(
            name: "uturn_tls_failures_total", help: "TLS connections ended by a TLS error (handshake or record).",
            series: [("", "tlsFailures")]),
        // TURN over DTLS.
        Family(
            name: "uturn_dtls_sessions_total",
            help: "DTLS client sessions, by event: accepted (a ClientHello with a valid cookie), refused (--tcp-connections, --tcp-connections-per-ip), closed (for any reason), timed_out (unfinished handshake, or idle with no allocation; also counted in closed), failed (a DTLS error; also counted in closed), replaced (a new ClientHello with a valid cookie from the address and port of an open session, RFC 6347 §4.2.8: the old session and its allocation end; also counted in closed).",
            label: "event",
            series: [
                ("accepted", "dtlsAccepted"), ("refused", "dtlsRefused"), ("closed", "dtlsClosed"),
                ("timed_out", "dtlsTimeouts"), ("failed", "dtlsFailures"), ("replaced", "dtlsReplaced"),
            ]),
        Family(
            name: "uturn_dtls_cookies_total",
            help: "ClientHellos from unknown clients answered statelessly (a HelloVerifyRequest with a cookie, or dropped), with no session made.",
            series: [("", "dtlsCookies")]),
        // Each worker's io_uring loop.
        Family(
            name: "uturn_credential_lookups_total",
            help: "Requests from a name the user database snapshot did not hold, answered after an on-miss lookup, by result: found (the user was added since the last poll), unknown (401), error (the database failed: 401), timeout (no answer within 2 s: 401), refused (too many waiting: 401 at once).",
            label: "result",
            series: [
                ("found", "lookupsFound"), ("unknown", "lookupsUnknown"), ("error", "lookupsFailed"),
                ("timeout", "lookupsTimedOut"),
                ("refused", "lookupsRefused"),
            ]),
        Family(
            name: "uturn_offload_packets_total",
            help: "Datagrams the kernel fast path relayed (--offload); also counted in uturn_relayed_packets_total.",
            label: "direction",
            series: [("client_to_peer", "offloadPacketsToPeers"), ("peer_to_client", "offloadPacketsToClients")]),
        Family(
            name: "uturn_offload_bytes_total",
            help: "Payload bytes the kernel fast path relayed; also counted in uturn_relayed_bytes_total.",
            label: "direction",
            series: [("client_to_peer", "offloadBytesToPeers"), ("peer_to_client", "offloadBytesToClients")]),
        Family(
            name: "uturn_offload_entries_total",
            help: "Channels written into (a bound channel) and deleted from (expired, deleted, denied) the kernel fast path.",
            label: "event", series: [("written", "offloadEntriesWritten"), ("deleted", "offloadEntriesDeleted")]),
        Family(
            name: "uturn_offload_passed_total",
            help: "Datagrams that matched a fast-path entry but were left to user space, by reason: length (ChannelData length field does not match the datagram), expired (the entry's expiry passed before user space removed it), local_origin (sent by a socket on this host in a shape the kernel cannot rewrite), unfit (IPv4 without checksum bound for IPv6, too big for the way out, or changing IP version on its way to a loopback address), no_next_hop (XDP: bpf_fib_lookup found no next hop: no neighbour entry yet, user space resolves it, or forwarding off on the interface).",
            label: "reason",
            series: [
                ("length", "offloadPassedLength"), ("expired", "offloadPassedExpired"),
                ("local_origin", "offloadPassedLocalOrigin"), ("unfit", "offloadPassedUnfit"),
                ("no_next_hop", "offloadPassedNoNextHop"),
            ]),
        Family(
            name: "uturn_ring_completions_total",
            help: "Completion queue entries handled; divided by uturn_ring_batches_total: CQEs per batch.",
            series: [("", "completions")], perWorker: true),
        Family(
            name: "uturn_ring_batches_total", help: "Batches of completions handled (passes of the worker's loop).",
            series: [("", "batches")], perWorker: true),
        Family(
            name: "uturn_send_calls_total",
            help: "SENDMSG operations submitted; uturn_sent_datagrams_total divided by this: datagrams per send.",
            series: [("", "sendCalls")], perWorker: true),
        Family(
            name: "uturn_sent_datagrams_total", help: "Datagrams the kernel accepted for sending.",
            series: [("", "datagramsSent")], perWorker: true),
        Family(
            name: "uturn_gso_sends_total", help: "Sends that carried several datagrams with UDP_SEGMENT (GSO).",
            series: [("", "gsoSends")], perWorker: true),
        Family(
            name: "uturn_gro_trains_total", help: "Receives that brought a UDP_GRO train (--gro-client, --gro-peer).",
            series: [("", "groTrains")], perWorker: true),
        Family(
            name: "uturn_gro_datagrams_total", help: "Datagrams that arrived in UDP_GRO trains.",
            series: [("", "groDatagrams")], perWorker: true),
        Family(
            name: "uturn_receive_enobufs_total",
            help: "Receives that ended with ENOBUFS: the receive buffers ran out and the kernel dropped datagrams (see --buffers).",
            series: [("", "enobufs")], perWorker: true),
        Family(
            name: "uturn_receive_rearms_total",
            help: "Receives armed again after they stopped (after ENOBUFS, once buffers came back).",
            series: [("", "receiveRearms")], perWorker: true),
        Family(
            name: "uturn_ring_sq_full_total",
            help: "Times the submission queue was full and was submitted before more could be queued (see --sq-entries).",
            series: [("", "sqFull")], perWorker: true),
    ]

    public let registry: PrometheusCollectorRegistry
    /// Each registry counter and where its value comes from (worker nil: the sum).
    let counters: [(counter: Counter, field: String, worker: Int?)]
    let active: Gauge
    let lock = Mutex<Void>(())

    /// Creates every metric for `workers` workers. `startTime`: seconds since
    /// the Unix epoch at which the process started.
    public init(
        workers: Int, version: String, startTime: Double, backend: String = "io_uring",
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
    ) {
        self.registry = registry
        func named(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        registry.makeGauge(
            descriptor: named("uturn_build_info", "Always 1; the version label says which uturnd runs."),
            labels: [("version", version)]
        ).set(to: 1)
        registry.makeGauge(
            descriptor: named("uturn_process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.")
        ).set(to: startTime)
        registry.makeGauge(descriptor: named("uturn_workers", "Worker threads (one io_uring or epoll each).")).set(to: Double(workers))
        registry.makeGauge(
            descriptor: named("uturn_backend_info", "Always 1; the backend label says what the workers run on (io_uring or epoll)."),
            labels: [("backend", backend)]
        ).set(to: 1)
        active = registry.makeGauge(
            descriptor: named(
                "uturn_allocations_active", "Allocations open now (created minus deleted minus expired). " + Self.lag))

        var counters: [(counter: Counter, field: String, worker: Int?)] = []
        for family in Self.families {
            let descriptor = named(family.name, family.help + " " + Self.lag)
            if family.perWorker {
                for w in 0..<workers {
                    let c = registry.makeCounter(descriptor: descriptor, labels: [("worker", "\(w)")])
                    counters.append((c, family.series[0].field, w))
                }
                continue
            }
            for series in family.series {
                let labels = family.label.map { [($0, series.value)] } ?? []
                counters.append((registry.makeCounter(descriptor: descriptor, labels: labels), series.field, nil))
            }
        }
        self.counters = counters
    }

    /// Copies `sample` into the metrics and returns the exposition text.
    public func render(_ sample: MetricsSample) -> String {
        lock.withLock { _ in
            for (counter, field, worker) in counters {
                let value: UInt64
                if let worker {
                    value = worker < sample.workers.count ? sample.workers[worker][field] ?? 0 : 0
                } else {
                    value = sample.total(field)
                }
                counter.reset()
                counter.increment(by: Int64(clamping: value))
            }
            // Clamped: a worker's counters are read one by one, so an
            // allocation may end between two reads.
            let created = sample.total("allocationsCreated")
            let ended = sample.total("allocationsDeleted") &+ sample.total("allocationsExpired")
            active.set(to: Double(created > ended ? created - ended : 0))
            return registry.emitToString()
        }
    }
}
