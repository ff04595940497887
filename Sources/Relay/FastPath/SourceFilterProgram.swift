import CFastPath
import FastPathObject
import Glibc

/// `--kernel-source-filter`: whether sources the per-source request limits
/// are refusing are also dropped in the kernel, before their datagrams reach
/// a listening socket.
public enum KernelSourceFilterMode: String, Sendable, CaseIterable {
    /// User space only.
    case off
    /// Loaded at start when it can be, and attached while a per-source
    /// limit is on (a reload may turn them on or off); when it cannot load,
    /// user space only, with one log line saying why.
    case auto
    /// Loaded and attached whatever the limits, or uturnd refuses to start.
    case on
}

/// The loaded filter's descriptors, shared by the workers: each attaches
/// `program` to its plain-UDP listeners and writes its own blocks into
/// `blocked` (the kernel's map calls need no lock; keys of different
/// workers never collide, since SO_REUSEPORT sends a 5-tuple to one worker).
struct SourceFilterMaps: Sendable {
    var program: Int32
    var blocked: Int32
    /// `--kernel-source-filter on`: a worker that cannot attach fails to start.
    var required: Bool
}

/// The kernel source filter of one engine (bpf/source_filter.bpf.c): a
/// BPF_PROG_TYPE_SOCKET_FILTER that each worker attaches to its plain-UDP
/// listening sockets (SO_ATTACH_BPF; not DTLS listeners, not relay sockets)
/// and that drops datagrams whose source the workers blocked. Nothing is
/// attached to an interface: the kernel removes the filter with each
/// socket, and frees the program and maps when the last socket and this
/// object are closed. Loaded before the workers start, closed after they stop.
final class SourceFilterProgram: @unchecked Sendable {
    // Invariant: `handle` is valid from a successful load until deinit,
    // and only this object closes it.
    private let handle: OpaquePointer
    let maps: SourceFilterMaps
    private let counters: Int32

    private init(handle: OpaquePointer, required: Bool) {
        self.handle = handle
        maps = SourceFilterMaps(
            program: uturn_source_filter_program_fd(handle), blocked: uturn_source_filter_blocked_fd(handle),
            required: required)
        counters = uturn_source_filter_counters_fd(handle)
    }

    deinit { uturn_source_filter_close(handle) }

    /// Loads the program for `mode`. Nil for `off` and for `auto` when it
    /// cannot load (after logging why); throws for `on` when it cannot
    /// load. In `auto` with every per-source limit off it is loaded but the
    /// workers attach it only when a reload turns a limit on, so until then
    /// no datagram runs it.
    static func start(mode: KernelSourceFilterMode, limitsOn: Bool, log: EngineLog) throws(EngineError)
        -> SourceFilterProgram?
    {
        switch mode {
        case .off:
            return nil
        case .auto:
            do {
                let program = try load(required: false)
                log(
                    .info,
                    limitsOn
                        ? "kernel source filter: on (sources over the per-source request limits are dropped before they reach a socket)"
                        : "kernel source filter: loaded, attached when a reload turns a per-source limit on")
                return program
            } catch {
                // With the limits off nothing is lost yet: say so without a warning.
                log(
                    limitsOn ? .warning : .info,
                    "kernel source filter: off, the per-source limits drop in user space only: \(error.description)")
                return nil
            }
        case .on:
            do {
                let program = try load(required: true)
                log(.info, "kernel source filter: on")
                return program
            } catch {
                throw EngineError(
                    "--kernel-source-filter on: \(error.description). Run uturnd as root or grant CAP_BPF, or use --kernel-source-filter auto/off"
                )
            }
        }
    }

    private static func load(required: Bool) throws(EngineError) -> SourceFilterProgram {
        var err = [CChar](repeating: 0, count: 512)
        let object = SourceFilterObject.bytes
        guard !object.isEmpty else { throw EngineError("the embedded BPF object is empty (a broken build)") }
        var handle: OpaquePointer? = nil
        let rc = object.withUnsafeBytes { o in
            uturn_source_filter_load(o.baseAddress, o.count, &handle, &err, err.count)
        }
        guard rc == 0, let handle else { throw EngineError(String(cString: err)) }
        return SourceFilterProgram(handle: handle, required: required)
    }

    /// Datagrams the filter dropped since it was loaded, summed over CPUs
    /// (the metrics read it; never the packet path).
    var drops: UInt64 { uturn_bpf_percpu_sum(counters, UInt32(SF_DROPPED.rawValue)) }
}
