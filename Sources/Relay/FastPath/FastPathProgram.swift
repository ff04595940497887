import CFastPath
import FastPathObject
import Glibc
import STUN

/// `--offload`: where established channels are relayed.
public enum OffloadMode: String, Sendable, CaseIterable {
    /// Everything in user space (io_uring).
    case off
    /// The kernel fast path where it can be loaded (XDP first, then TC),
    /// else user space alone, with one log line saying which and why.
    case auto
    /// The TC program, or refuse to start.
    case tc
    /// The XDP program, or refuse to start.
    case xdp
}

/// Datagrams that matched a fast-path entry but were left to user space,
/// by reason (summed over CPUs, since the program was loaded).
public struct OffloadPassed: Sendable, Equatable {
    /// ChannelData whose length field does not match the datagram.
    public var length: UInt64
    /// The entry's expiry had passed (user space had not removed it yet).
    public var expired: UInt64
    /// Sent by a socket on this host, in a shape the kernel cannot relay
    /// (see is_partial in the BPF program).
    public var localOrigin: UInt64
    /// IPv4 without a checksum bound for IPv6, too big for the way out, or
    /// changing IP version on its way to a loopback address.
    public var unfit: UInt64
    /// XDP: no next hop (no neighbour entry yet, or forwarding off on the interface).
    public var noNextHop: UInt64
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
/// at XDP or TC ingress of the chosen interfaces. Loaded before the workers start,
/// closed (detached, maps freed) after they stop. A tcx or XDP attachment is
/// a bpf_link, which the kernel detaches when the process exits, even by a
/// crash.
final class FastPathProgram: @unchecked Sendable {
    // Invariant: `handle` is valid from a successful load until deinit,
    // and only this object closes it.
    private let handle: OpaquePointer
    let maps: FastPathMaps
    /// "tcx", "tc", "xdp native" or "xdp generic" per interface, for the
    /// start-up line and the metrics.
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
        let fix = "Run uturnd as root or grant CAP_BPF and CAP_NET_ADMIN (packaging/uturnd.service shows how), or use --offload auto/off"
        switch mode {
        case .off:
            return nil
        case .tc, .xdp:
            do {
                let program = try load(interfaces: interfaces, hook: mode == .xdp ? .xdp : .tc)
                log(.info, "offload: kernel fast path on \(program.describe())")
                if mode == .xdp, let off = forwardingOff(interfaces) {
                    log(.warning, "offload: forwarding is off on \(off): XDP leaves every datagram that must go out of a device to user space (sysctl net.ipv4.conf.\(off).forwarding=1 and net.ipv6.conf.\(off).forwarding=1, or --offload tc)")
                }
                return program
            } catch {
                throw EngineError("--offload \(mode.rawValue): \(error.description). \(fix)")
            }
        case .auto:
            // XDP first (earliest in the receive path), then TC. XDP sends
            // out of a device only where bpf_fib_lookup answers, which needs
            // forwarding on: without it, TC (bpf_redirect_neigh) does better.
            let xdpError: EngineError
            do throws(EngineError) {
                if let off = forwardingOff(interfaces) {
                    throw EngineError("forwarding is off on \(off) (net.ipv4.conf.\(off).forwarding=0), which XDP's next-hop lookup needs")
                }
                let program = try load(interfaces: interfaces, hook: .xdp)
                log(.info, "offload: kernel fast path on \(program.describe()) (auto: XDP attached)")
                return program
            } catch { xdpError = error }
            do {
                let program = try load(interfaces: interfaces, hook: .tc)
                log(.info, "offload: kernel fast path on \(program.describe()) (auto: XDP refused: \(xdpError.description))")
                return program
            } catch {
                log(.warning, "offload: off, relaying in user space only: \(error.description)")
                return nil
            }
        }
    }

    enum Hook { case tc, xdp }

    /// The first of `interfaces` (loopback aside) with IPv4 forwarding off:
    /// XDP's bpf_fib_lookup answers only where it is on (IPv6 likewise with
    /// its own setting).
    private static func forwardingOff(_ interfaces: [String]) -> String? {
        interfaces.first { name in
            guard name != "lo" else { return false }
            guard let f = fopen("/proc/sys/net/ipv4/conf/\(name)/forwarding", "r") else { return true }
            defer { fclose(f) }
            return fgetc(f) != Int32(UInt8(ascii: "1"))
        }
    }

    private func describe() -> String {
        attachments.map { "\($0.interface) (\($0.how))" }.joined(separator: ", ")
    }

    private static func load(interfaces: [String], hook: Hook) throws(EngineError) -> FastPathProgram {
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
            let rc =
                hook == .xdp
                ? uturn_fastpath_attach_xdp(handle, Int32(index), &how, &err, err.count)
                : uturn_fastpath_attach_tc(handle, Int32(index), &how, &err, err.count)
            guard rc == 0 else {
                uturn_fastpath_close(handle)
                throw EngineError("\(name): \(String(cString: err))")
            }
            attached.append((name, how.map { String(cString: $0) } ?? "tc"))
        }
        return FastPathProgram(handle: handle, attachments: attached)
    }

    /// ChannelData or peer data that matched an entry but went to user
    /// space, by reason (fp_passed_reason).
    var passedToUserSpace: OffloadPassed {
        func read(_ r: fp_passed_reason) -> UInt64 { uturn_bpf_percpu_sum(maps.passed, UInt32(r.rawValue)) }
        return OffloadPassed(
            length: read(FP_PASSED_LENGTH), expired: read(FP_PASSED_EXPIRED), localOrigin: read(FP_PASSED_LOCAL_ORIGIN),
            unfit: read(FP_PASSED_UNFIT), noNextHop: read(FP_PASSED_NO_NEXT_HOP))
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
