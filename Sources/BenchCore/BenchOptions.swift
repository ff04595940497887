import STUN

public enum BenchMode: String, Sendable, CaseIterable {
    case flood, rate, alloc, invalid
}

public struct BenchOptionsError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Command-line options of uturn-bench.
public struct BenchOptions: Sendable, Equatable {
    public var mode: BenchMode = .flood
    public var server: TransportAddress?
    public var user = "bench"
    public var password = "bench"
    public var realm: String?
    public var sessions = 1
    public var payload = 120
    public var window = 64
    public var rate = 1000
    public var duration = 10.0
    public var warmup = 1.0
    public var cpu: Int?
    public var relayPID: Int32?
    public var jsonPath: String?
    /// External peer reflector; nil: run our own on `peerPort`.
    public var peer: TransportAddress?
    public var peerPort: UInt16 = 0
    public var quiet = false
    /// flood/rate: no TURN (no Allocate, no ChannelBind): ChannelData on
    /// channel 0x4000 straight to --server, for the bare reflector
    /// scripts/bench/cdreflect.c (the harness ceiling).
    public var noTurn = false
    /// invalid: the junk kinds, sent round-robin.
    public var kinds: [InvalidKind] = InvalidKind.allCases
    /// invalid: packets/s of the legitimate session relaying beside the junk.
    public var legitRate = 50
    /// invalid: seed of the junk generator (nil: a random one).
    public var seed: UInt64?
    /// flood/rate: each session sends exactly this many packets, then the run
    /// ends once all came back (or 1 s after the last send); no warm-up, and
    /// --duration only bounds the run. For cross-checks against count-based
    /// clients (turnutils_uclient -n).
    public var count: Int?
    /// flood/rate: send up to this many equal frames per sendmsg as one GSO
    /// train (UDP_SEGMENT); 1: one datagram per send. The peer reflector then
    /// receives with UDP_GRO and echoes each train as one GSO send.
    public var gso = 1
    /// flood/rate: the session sockets receive with UDP_GRO.
    public var gro = false

    /// The harness shape, as the tables name it.
    public var harness: String {
        switch (gso > 1, gro) {
        case (false, false): "single"
        case (true, false): "gso"
        case (false, true): "gro"
        case (true, true): "gso+gro"
        }
    }

    public init() {}

    public static let usage = """
        usage: uturn-bench <flood|rate|alloc|invalid> --server HOST:PORT [--user U] [--password P] [--realm R]
                           [--sessions M] [--payload BYTES] [--window N] [--rate PPS] [--duration S] [--warmup S]
                           [--cpu N] [--relay-pid PID] [--json PATH] [--peer HOST:PORT | --peer-port PORT] [--quiet]
                           [--no-turn]                                  (flood, rate: for the bare reflector)
                           [--count N]               (flood, rate: N packets per session, then stop; no warm-up)
                           [--gso N] [--gro]          (flood, rate: GSO trains of up to N frames; UDP_GRO receives)
                           [--kinds K1,K2,...|all] [--legit-rate PPS] [--seed N]          (invalid)
          flood    keep --window datagrams in flight per session
          rate     --rate packets/s per session (sessions evenly phased)
          alloc    one new client at a time (new 5-tuple): Allocate 401, Allocate, Refresh, Refresh 0
          invalid  --rate junk packets/s in all (kinds round-robin, one source port per kind) while one
                   legitimate session relays --legit-rate packets/s; counts the answers by class.
                   Kinds: \(InvalidKind.allCases.map(\.rawValue).joined(separator: ", "))
        """

    /// Minimum payload: sequence number, send timestamp, session index.
    public static let minimumPayload = 20

    public init(arguments: [String]) throws(BenchOptionsError) {
        var i = 0
        func value(_ name: String) throws(BenchOptionsError) -> String {
            i += 1
            guard i < arguments.count else { throw BenchOptionsError("\(name) needs a value") }
            return arguments[i]
        }
        func int(_ name: String) throws(BenchOptionsError) -> Int {
            let v = try value(name)
            guard let n = Int(v), n >= 0 else { throw BenchOptionsError("\(name): not a non-negative integer: \(v)") }
            return n
        }
        func seconds(_ name: String) throws(BenchOptionsError) -> Double {
            let v = try value(name)
            guard let n = Double(v), n >= 0, n <= 86400 else {
                throw BenchOptionsError("\(name): not a duration in seconds: \(v)")
            }
            return n
        }
        func address(_ name: String) throws(BenchOptionsError) -> TransportAddress {
            let v = try value(name)
            guard let a = TransportAddress(v) else { throw BenchOptionsError("\(name): not HOST:PORT: \(v)") }
            return a
        }
        var sawMode = false
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--server": server = try address(a)
            case "--user": user = try value(a)
            case "--password": password = try value(a)
            case "--realm": realm = try value(a)
            case "--sessions": sessions = try int(a)
            case "--payload": payload = try int(a)
            case "--window": window = try int(a)
            case "--rate": rate = try int(a)
            case "--duration": duration = try seconds(a)
            case "--warmup": warmup = try seconds(a)
            case "--cpu": cpu = try int(a)
            case "--relay-pid":
                let n = try int(a)
                guard n > 0, n <= Int(Int32.max) else { throw BenchOptionsError("--relay-pid: bad pid") }
                relayPID = Int32(n)
            case "--json": jsonPath = try value(a)
            case "--peer": peer = try address(a)
            case "--peer-port":
                let n = try int(a)
                guard n <= 65535 else { throw BenchOptionsError("--peer-port: out of range") }
                peerPort = UInt16(n)
            case "--quiet": quiet = true
            case "--no-turn": noTurn = true
            case "--gso":
                gso = try int(a)
                guard (1...64).contains(gso) else { throw BenchOptionsError("--gso: 1...64 frames per train") }
            case "--gro": gro = true
            case "--count":
                let n = try int(a)
                guard n >= 1 else { throw BenchOptionsError("--count: at least 1 packet per session") }
                count = n
            case "--kinds":
                let v = try value(a)
                guard let k = InvalidKind.list(v) else {
                    throw BenchOptionsError(
                        "--kinds: a comma-separated list of \(InvalidKind.allCases.map(\.rawValue).joined(separator: ", ")) or all"
                    )
                }
                kinds = k
            case "--legit-rate":
                legitRate = try int(a)
                guard legitRate >= 1 else { throw BenchOptionsError("--legit-rate: at least 1 packet/s") }
            case "--seed":
                let v = try value(a)
                guard let n = UInt64(v) else { throw BenchOptionsError("--seed: not an unsigned integer: \(v)") }
                seed = n
            case "--mode":
                let v = try value(a)
                guard let m = BenchMode(rawValue: v) else { throw BenchOptionsError("unknown mode \(v)") }
                mode = m
                sawMode = true
            default:
                if !a.hasPrefix("-"), !sawMode, let m = BenchMode(rawValue: a) {
                    mode = m
                    sawMode = true
                } else {
                    throw BenchOptionsError("unknown argument \(a)")
                }
            }
            i += 1
        }
        guard server != nil else { throw BenchOptionsError("--server HOST:PORT is required") }
        guard sessions >= 1, sessions <= 10000 else { throw BenchOptionsError("--sessions: 1...10000") }
        guard payload >= Self.minimumPayload, payload <= 1400 else {
            throw BenchOptionsError("--payload: \(Self.minimumPayload)...1400 bytes")
        }
        guard window >= 1, window <= 4096 else { throw BenchOptionsError("--window: 1...4096") }
        guard rate >= 1 else { throw BenchOptionsError("--rate: at least 1 packet/s") }
        guard duration > 0 else { throw BenchOptionsError("--duration must be > 0") }
        if noTurn, mode != .flood, mode != .rate { throw BenchOptionsError("--no-turn: flood and rate only") }
        if gso > 1 || gro {
            guard mode == .flood || mode == .rate else { throw BenchOptionsError("--gso, --gro: flood and rate only") }
            guard gso * (payload + 4) <= 65000 else {
                throw BenchOptionsError("--gso: a train is at most 65,000 bytes")
            }
        }
        if count != nil {
            guard mode == .flood || mode == .rate else { throw BenchOptionsError("--count: flood and rate only") }
            warmup = 0
        }
        if noTurn, peer != nil {
            throw BenchOptionsError("--no-turn: the reflector forwards to --peer-port, not --peer")
        }
    }
}
