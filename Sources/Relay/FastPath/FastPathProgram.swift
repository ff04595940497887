import CFastPath
import FastPathObject
import Glibc
import STUN

/// `--offload`: where established channels are relayed.
public enum OffloadMode: String, Sendable, CaseIterable {
    /// Everything in user space (io_uring).
    case off
    /// The kernel fast path where it can be loaded (XDP first, then TC),
    /// else user space alone, with one log line saying why.
    case auto
    /// The TC program, or refuse to start.
    case tc
    /// The XDP program, or refuse to start.
    case xdp
}

/// The maps of a loaded fast path, shared by the workers: each worker writes
/// only the entries of its own allocations (and counter slots of its own
/// range), so no lock is needed; the kernel reads them without one.
struct FastPathMaps: Sendable {
    var clients: Int32
    var peers: Int32
    var counters: Int32
    var passed: Int32
}

/// The kernel fast path of one engine: the BPF program (compiled at build
/// time, embedded by the BPFObjectPlugin) loaded through libbpf and attached
/// at TC ingress of the chosen interfaces. Loaded before the workers start,
/// closed (detached, maps freed) after they stop. A tcx attachment is a
/// bpf_link, which the kernel detaches when the process exits, even by a crash.
final class FastPathProgram: @unchecked Sendable {
    // Invariant: `handle` is valid from a successful load until deinit,
    // and only this object closes it.
    private let handle: OpaquePointer
    let maps: FastPathMaps
    /// "tcx" or "tc" per interface, for the start-up line.
    let attachments: [(interface: String, how: String)]

    private init(handle: OpaquePointer, attachments: [(String, String)]) {
        self.handle = handle
        maps = FastPathMaps(
            clients: uturn_fastpath_clients_fd(handle), peers: uturn_fastpath_peers_fd(handle),
            counters: uturn_fastpath_counters_fd(handle), passed: uturn_fastpath_passed_fd(handle))
        self.attachments = attachments
    }

    deinit { uturn_fastpath_close(handle) }

    /// Loads and attaches the program for `mode` on `interfaces`. Returns nil
    /// for `off`, and for `auto` when it cannot (after logging why); throws
    /// for `tc`/`xdp` when it cannot, naming the cause and the fix.
    static func start(
        mode: OffloadMode, interfaces: [String], log: EngineLog
    ) throws(EngineError) -> FastPathProgram? {
        switch mode {
        case .off:
            return nil
        case .xdp:
            throw EngineError(
                "--offload xdp: the XDP program is not built in this version; use --offload tc (or auto)")
        case .auto, .tc:
            do {
                let program = try load(interfaces: interfaces)
                let on = program.attachments.map { "\($0.interface) (\($0.how))" }.joined(separator: ", ")
                log(.info, "offload: kernel fast path (TC ingress) on \(on); XDP is not built in this version")
                return program
            } catch {
                if mode == .tc {
                    throw EngineError(
                        "--offload tc: \(error.description). Run uturnd as root or grant CAP_BPF and CAP_NET_ADMIN (packaging/uturnd.service shows how), or use --offload auto/off")
                }
                log(.warning, "offload: off, relaying in user space only: \(error.description)")
                return nil
            }
        }
    }

    private static func load(interfaces: [String]) throws(EngineError) -> FastPathProgram {
        guard !interfaces.isEmpty else { throw EngineError("no interface to attach to") }
        var err = [CChar](repeating: 0, count: 2048)
        let object = FastPathObject.bytes
        guard !object.isEmpty else { throw EngineError("the embedded BPF object is empty (a broken build)") }
        var handle: OpaquePointer? = nil
        let rc = object.withUnsafeBytes { o in
            uturn_fastpath_load(o.baseAddress, o.count, &handle, &err, err.count)
        }
        guard rc == 0, let handle else { throw EngineError(String(cString: err)) }
        var attached: [(String, String)] = []
        for name in interfaces {
            let index = uturn_fastpath_ifindex(name)
            guard index != 0 else {
                uturn_fastpath_close(handle)
                throw EngineError("no interface named \(name)")
            }
            var how: UnsafePointer<CChar>? = nil
            guard uturn_fastpath_attach_tc(handle, Int32(index), &how, &err, err.count) == 0 else {
                uturn_fastpath_close(handle)
                throw EngineError("\(name): \(String(cString: err))")
            }
            attached.append((name, how.map { String(cString: $0) } ?? "tc"))
        }
        return FastPathProgram(handle: handle, attachments: attached)
    }

    /// ChannelData that matched an entry but went to user space, by reason.
    var passedToUserSpace: (length: UInt64, expired: UInt64) {
        (
            uturn_fastpath_read_passed(maps.passed, UInt32(FP_PASSED_LENGTH.rawValue)),
            uturn_fastpath_read_passed(maps.passed, UInt32(FP_PASSED_EXPIRED.rawValue))
        )
    }

    /// The interfaces that hold `addresses` (a wildcard address: every
    /// interface that is up), for `--offload-interface`'s default.
    static func interfaces(holding addresses: [IPAddress]) -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var names: [String] = []
        let wildcard = addresses.contains { $0 == IPAddress(v4: 0) || $0 == IPAddress(v6High: 0, v6Low: 0) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let name = entry.pointee.ifa_name.map({ String(cString: $0) }), let sa = entry.pointee.ifa_addr
            else { continue }
            let up = entry.pointee.ifa_flags & UInt32(IFF_UP) != 0
            let length = sa.pointee.sa_family == sa_family_t(AF_INET6) ? 28 : 16
            guard let address = TransportAddress(sockaddr: UnsafeRawPointer(sa), length: length) else { continue }
            if (wildcard && up) || addresses.contains(address.ip), !names.contains(name) { names.append(name) }
        }
        return names
    }
}
