import CURing

#if canImport(Glibc)
import Glibc
#endif

/// What this kernel's io_uring offers, and what uturn chose, found once at
/// start by ``probe(options:)``. Log ``description``.
public struct KernelFeatures: Sendable, CustomStringConvertible {
    /// `uname -r`.
    public var kernelRelease: String
    /// The newest setup rung the kernel accepts.
    public var bestRung: SetupRung
    /// The rung a ring with the probed options gets (lower if options force it).
    public var chosenRung: SetupRung
    /// `IORING_FEAT_*` bits from `io_uring_params.features`.
    public var featureFlags: UInt32
    /// Opcodes the kernel reports as supported (`io_uring_get_probe_ring`).
    public var supportedOpcodes: OpcodeSet
    /// `io_uring_register_buf_ring` works (5.19+).
    public var providedBufferRings: Bool
    /// Multishot RECVMSG with buffer select works (6.0+), tried on a loopback socket.
    public var multishotReceiveMessage: Bool
    /// The receive path to use: multishot if the kernel has it and the options allow it.
    public var useMultishotReceive: Bool

    /// A 256-bit set of `IORING_OP_*` values.
    public struct OpcodeSet: Sendable, Hashable {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        public init() {}
        public func contains(_ op: io_uring_op) -> Bool { contains(raw: Int(op.rawValue)) }
        public func contains(raw op: Int) -> Bool {
            guard op >= 0, op < 256 else { return false }
            let w: UInt64
            switch op >> 6 {
            case 0: w = words.0
            case 1: w = words.1
            case 2: w = words.2
            default: w = words.3
            }
            return w & (1 << UInt64(op & 63)) != 0
        }
        mutating func insert(raw op: Int) {
            let bit: UInt64 = 1 << UInt64(op & 63)
            switch op >> 6 {
            case 0: words.0 |= bit
            case 1: words.1 |= bit
            case 2: words.2 |= bit
            default: words.3 |= bit
            }
        }
        public static func == (a: OpcodeSet, b: OpcodeSet) -> Bool {
            a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
        }
        public func hash(into h: inout Hasher) {
            h.combine(words.0)
            h.combine(words.1)
            h.combine(words.2)
            h.combine(words.3)
        }
    }

    /// Whether `IORING_FEAT_*` `flag` is set.
    public func has(feature flag: UInt32) -> Bool { featureFlags & flag == flag }

    /// Names of the `IORING_FEAT_*` bits that matter to uturn.
    public var featureNames: [String] {
        let named: [(UInt32, String)] = [
            (IORING_FEAT_NODROP, "NODROP"), (IORING_FEAT_FAST_POLL, "FAST_POLL"),
            (IORING_FEAT_EXT_ARG, "EXT_ARG"), (IORING_FEAT_CQE_SKIP, "CQE_SKIP"),
            (IORING_FEAT_SUBMIT_STABLE, "SUBMIT_STABLE"), (IORING_FEAT_NATIVE_WORKERS, "NATIVE_WORKERS"),
        ]
        return named.filter { has(feature: $0.0) }.map(\.1)
    }

    /// One line for the startup log: "kernel 6.18 offers ...; chose ...".
    public var description: String {
        var offers = ["setup up to \(bestRung) (\(bestRung.minimumKernel)+)"]
        offers.append(multishotReceiveMessage ? "multishot RECVMSG" : "no multishot RECVMSG")
        offers.append(providedBufferRings ? "provided buffer rings" : "no provided buffer rings")
        if supportedOpcodes.contains(IORING_OP_MSG_RING) { offers.append("MSG_RING") }
        if supportedOpcodes.contains(IORING_OP_SEND_ZC) { offers.append("SEND_ZC") }
        offers.append("features " + featureNames.joined(separator: ","))
        let receive = useMultishotReceive ? "multishot RECVMSG" : "single-shot RECVMSG"
        return "kernel \(kernelRelease) offers io_uring with \(offers.joined(separator: ", ")); "
            + "chose \(chosenRung) with \(receive)"
    }

    /// Sets up throwaway rings to find out what the kernel supports: the best
    /// setup rung, the rung `options` lead to, the opcode table, provided buffer
    /// rings, and multishot RECVMSG (tried for real on a 127.0.0.1 socket, then
    /// cancelled). Takes a few milliseconds; call once at start.
    ///
    /// Throws ``URingError/setup(_:)`` when io_uring is unusable; explain it with
    /// ``URingError/explanation``.
    public static func probe(options: RingOptions = RingOptions()) throws(URingError) -> KernelFeatures {
        var best = RingOptions()
        best.lowestRung = .basic
        best.submissionEntries = 8
        best.completionEntries = 16
        let bestRung = try Ring(options: best).setupRung

        var small = options
        small.submissionEntries = 8
        small.completionEntries = 16
        var ring = try Ring(options: small)
        var features = KernelFeatures(
            kernelRelease: Self.unameRelease(), bestRung: bestRung, chosenRung: ring.setupRung,
            featureFlags: ring.featureFlags, supportedOpcodes: OpcodeSet(), providedBufferRings: false,
            multishotReceiveMessage: false, useMultishotReceive: false)

        if let probe = io_uring_get_probe_ring(ring.raw) {
            let ops = probe.pointee.ops_len
            // `ops` is a flexible array member (Swift does not import it); it
            // follows the 16-byte header (checked in curing.c).
            let ops0 = (UnsafeRawPointer(probe) + 16).assumingMemoryBound(to: io_uring_probe_op.self)
            for i in 0..<Int(ops) where UInt32(ops0[i].flags) & IO_URING_OP_SUPPORTED != 0 {
                features.supportedOpcodes.insert(raw: Int(ops0[i].op))
            }
            io_uring_free_probe(probe)
        }

        let group: UInt16 = 0xFFFF
        guard let buffers = try? BufferRing(ring: &ring, groupID: group, count: 2, bufferSize: 512) else {
            return features
        }
        features.providedBufferRings = true
        features.multishotReceiveMessage = Self.tryMultishot(ring: &ring, group: group)
        features.useMultishotReceive = features.multishotReceiveMessage && options.allowMultishotReceive
        buffers.unregister(from: &ring)
        return features
    }

    /// Arms a multishot RECVMSG on an idle loopback socket and cancels it: a
    /// kernel without multishot RECVMSG fails the SQE with EINVAL at once, one
    /// with it keeps the receive armed until the cancel (ECANCELED).
    static func tryMultishot(ring: inout Ring, group: UInt16) -> Bool {
        guard let socket = try? UDPSocket.bound(to: .loopbackV4()) else { return false }
        defer { socket.close() }
        let header = ReceiveMessageHeader()
        let recv = UserData(kind: .ringInternal, slot: 1)
        let cancel = UserData(kind: .ringInternal, slot: 2)
        guard ring.prepareReceiveMessageMultishot(socket: socket.rawValue, header: header, bufferGroup: group, userData: recv),
            (try? ring.submit()) != nil,
            ring.prepareCancel(fileDescriptor: socket.rawValue, userData: cancel)
        else { return false }
        var receiveResult: Int32?
        for _ in 0..<10 where receiveResult == nil {
            _ = try? ring.submitAndWait(minComplete: 1, timeout: .milliseconds(100))
            ring.forEachCompletion { cqe in
                if cqe.userData == recv { receiveResult = cqe.result }
            }
        }
        return receiveResult == -ECANCELED
    }

    static func unameRelease() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown" }
        return withUnsafeBytes(of: &u.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
