import CFastPath
import Glibc
import STUN
import TURN
import URing

/// The worker's UDP side: one listener per listening address (SO_REUSEPORT,
/// so the kernel hashes each client 5-tuple to one worker for life), the
/// relay sockets of its allocations (and RFC 6062 relay listeners, which
/// share their ports), and the send batcher that turns the datagrams of a
/// batch into GSO sends.
///
/// It owns the sockets and the receive/send mechanics; what a datagram
/// means (ChannelData, STUN, peer data) is decided by the worker's routing
/// through the TURN tables, which then calls `sendToPeer`/`sendToClient`.
struct DatagramPart: ~Copyable {
    struct Listener {
        var fd: Int32
        var local: TransportAddress
        /// A DTLS listener: its datagrams are records of DTLS sessions.
        var dtls: Bool
    }

    let listeners: UnsafeMutableBufferPointer<Listener>
    /// The kernel source filter's program (-1: not loaded), kept so that a
    /// reload turning the per-source limits on or off can attach or detach it.
    let sourceFilterProgram: Int32
    /// Whether the filter is attached to the plain-UDP listeners.
    private(set) var sourceFilterAttached: Bool
    /// `--kernel-source-filter on`: attached whatever the limits.
    private let sourceFilterRequired: Bool
    var relays: RelaySockets
    /// Client-facing sockets of allocations moved here from a 5-tuple
    /// another worker receives (RFC 8016 across workers).
    var moved: MovedSockets
    var batcher: SendBatcher
    /// Listener slots whose receive ended and must be re-armed.
    private let rearmListeners: UnsafeMutablePointer<Bool>
    /// Relay receives that ended (slot, generation), awaiting re-arm.
    private var rearmRelays: [UserData] = []
    /// Something above waits for a re-arm (see `rearm`).
    private(set) var needsRearm = false
    private(set) var gsoEnabled: Bool
    /// UDP_GRO on listener sockets (client side) / relay sockets (peer side):
    /// those receives draw large buffers and may hold a train of datagrams.
    let groClient: Bool
    let groPeer: Bool

    /// Binds every listening address (each worker binds each one with
    /// SO_REUSEPORT), and attaches the kernel source filter to the plain-UDP
    /// ones when it is loaded and `attachFilter` (a per-source limit is on,
    /// or `--kernel-source-filter on`). A filter that cannot attach fails
    /// the worker when `on`, else is logged and left off that socket.
    init(
        config: EngineConfig, relayCapacity: Int, ports: ClosedRange<UInt16>, workerIndex: Int,
        sourceFilter: SourceFilterMaps? = nil, attachFilter: Bool = true, log: EngineLog? = nil
    ) throws(EngineError) {
        let all = config.listen.map { ($0, false) } + config.dtlsListen.map { ($0, true) }
        let bound = UnsafeMutableBufferPointer<Listener>.allocate(capacity: all.count)
        for (i, (address, dtls)) in all.enumerated() {
            do {
                let s = try UDPSocket.bound(to: SocketAddress(address), reusePort: true)
                if config.groClient {
                    do { try s.setUDPGRO(true) } catch {
                        s.close()
                        throw error
                    }
                }
                if let filter = sourceFilter, attachFilter || filter.required, !dtls,
                    let why = Self.attachSourceFilter(filter.program, to: s.rawValue, address)
                {
                    if filter.required {
                        s.close()
                        throw EngineError(why)
                    }
                    log?(.warning, "worker \(workerIndex): \(why); requests from it are limited in user space only")
                }
                bound.initializeElement(at: i, to: Listener(fd: s.rawValue, local: address, dtls: dtls))
            } catch {
                for j in 0..<i { Syscall.close(bound[j].fd) }
                bound.deallocate()
                throw EngineError("worker \(workerIndex): cannot listen on \(dtls ? "dtls" : "udp") \(address): \(error)")
            }
        }
        listeners = bound
        // From the arguments only: reading a stored property of this
        // ~Copyable struct before every one is set (`sourceFilterRequired`
        // here) built a release binary that freed `relays` inside this
        // init and crashed at start (Swift 6.3); debug builds were fine.
        sourceFilterProgram = sourceFilter?.program ?? -1
        sourceFilterRequired = sourceFilter?.required ?? false
        sourceFilterAttached = sourceFilter != nil && (attachFilter || (sourceFilter?.required ?? false))
        relays = RelaySockets(capacity: relayCapacity, ports: ports, config: config, workerIndex: workerIndex)
        moved = MovedSockets()
        // Large areas for DTLS records bigger than a send's scratch (a
        // large peer datagram for a DTLS client): only with DTLS on.
        let dtlsOn = !config.dtlsListen.isEmpty && config.dtls != nil
        batcher = SendBatcher(
            capacity: config.sendOperations, gso: config.gso, largeAreas: dtlsOn ? Self.dtlsLargeAreas : 0)
        rearmListeners = .allocate(capacity: all.count)
        rearmListeners.initialize(repeating: false, count: all.count)
        rearmRelays.reserveCapacity(relayCapacity)
        gsoEnabled = config.gso
        groClient = config.groClient
        groPeer = config.groPeer
    }

    deinit {
        for i in 0..<listeners.count { Syscall.close(listeners[i].fd) }
        listeners.deallocate()
        rearmListeners.deallocate()
    }

    /// Attaches `program` to listening socket `fd` on `address`; nil when
    /// it did, else why not.
    private static func attachSourceFilter(_ program: Int32, to fd: Int32, _ address: TransportAddress) -> String? {
        let rc = uturn_source_filter_attach(fd, program)
        guard rc != 0 else { return nil }
        return "cannot attach the kernel source filter to udp \(address): \(String(cString: strerror(-rc)))"
    }

    /// After a reload: attaches the loaded kernel source filter to the
    /// plain-UDP listeners when `limitsOn` (a per-source limit was turned
    /// on), or detaches it when not (no limit is left to block for, so no
    /// datagram need pay for the filter's lookup), except under
    /// `--kernel-source-filter on`. Returns why a socket could not change
    /// (the limits then work in user space there). Nothing to do without a
    /// loaded program, or when already so.
    mutating func setSourceFilter(limitsOn: Bool) -> [String] {
        let on = limitsOn || sourceFilterRequired
        guard sourceFilterProgram >= 0, on != sourceFilterAttached else { return [] }
        var failures: [String] = []
        for i in 0..<listeners.count where !listeners[i].dtls {
            if on {
                if let why = Self.attachSourceFilter(sourceFilterProgram, to: listeners[i].fd, listeners[i].local) {
                    failures.append(why)
                }
            } else {
                let rc = uturn_source_filter_detach(listeners[i].fd)
                if rc != 0 {
                    failures.append(
                        "cannot detach the kernel source filter from udp \(listeners[i].local): \(String(cString: strerror(-rc)))"
                    )
                }
            }
        }
        sourceFilterAttached = on
        return failures
    }

    /// Single-shot receive headers: listeners first, then relay slots, then moved sockets.
    var datagramSockets: Int { listeners.count + relays.capacity + moved.count }

    /// The single-shot header index of moved-socket slot `slot`.
    @inline(__always)
    func movedHeader(_ slot: UInt32) -> Int { listeners.count + relays.capacity + Int(slot) }

    /// The index of the UDP (not DTLS) listener on `local`.
    func listenerIndex(for local: TransportAddress) -> Int? {
        for i in 0..<listeners.count where listeners[i].local == local && !listeners[i].dtls { return i }
        return nil
    }

    @inline(__always)
    func listenerFD(for local: TransportAddress) -> Int32? {
        for i in 0..<listeners.count where listeners[i].local == local && !listeners[i].dtls { return listeners[i].fd }
        return nil
    }

    /// The relay socket of an allocation's relayed endpoint, if still open.
    @inline(__always)
    func relayFD(_ endpoint: RelayEndpoint) -> Int32? {
        let fd = relays.fd(ofHandle: endpoint.handle)
        return fd >= 0 ? fd : nil
    }

    // MARK: Arming receives

    mutating func armListener(_ i: Int, _ reactor: inout Reactor) {
        reactor.submit(
            .receiveMessage(
                socket: listeners[i].fd, group: groClient ? ReceiveBuffers.largeGroup : ReceiveBuffers.smallGroup,
                singleShotHeader: reactor.multishot ? -1 : Int32(i),
                userData: UserData(kind: .listenerReceive, slot: UInt32(i))))
    }

    mutating func armRelay(slot: UInt32, generation: UInt32, fd: Int32, _ reactor: inout Reactor) {
        reactor.submit(
            .receiveMessage(
                socket: fd, group: groPeer ? ReceiveBuffers.largeGroup : ReceiveBuffers.smallGroup,
                singleShotHeader: reactor.multishot ? -1 : Int32(listeners.count + Int(slot)),
                userData: UserData(kind: .relayReceive, slot: slot, generation: generation)))
    }

    mutating func armMoved(slot: UInt32, generation: UInt32, fd: Int32, _ reactor: inout Reactor) {
        reactor.submit(
            .receiveMessage(
                socket: fd, group: groClient ? ReceiveBuffers.largeGroup : ReceiveBuffers.smallGroup,
                singleShotHeader: reactor.multishot ? -1 : Int32(movedHeader(slot)),
                userData: UserData(kind: .movedReceive, slot: slot, generation: generation)))
    }

    /// A moved socket's receive ended while the socket is still open.
    mutating func movedReceiveEnded(_ ud: UserData) {
        moved.receiveEnded(ud)
        needsRearm = true
    }

    /// Cancels the receives of moved sockets closed since the last call.
    mutating func cancelClosedMoved(_ reactor: inout Reactor) {
        guard !moved.toCancel.isEmpty else { return }
        for ud in moved.toCancel { reactor.submit(.cancel(target: ud)) }
        moved.clearCancels()
    }

    /// Arms the sockets the TURN state machine opened while handling a
    /// request: a receive on a UDP relay socket, an accept on an RFC 6062
    /// relay listener.
    mutating func armNewRelays(_ reactor: inout Reactor) {
        guard relays.pendingArms > 0 else { return }
        for i in 0..<relays.pendingArms {
            let slot = relays.pendingArm(i)
            guard let s = relays.openSlot(slot) else { continue }
            if s.tcp {
                reactor.submit(
                    .acceptMultishot(
                        socket: s.fd, userData: UserData(kind: .relayAccept, slot: slot, generation: s.generation)))
            } else {
                armRelay(slot: slot, generation: s.generation, fd: s.fd, &reactor)
            }
        }
        relays.clearPendingArms()
    }

    /// Cancels the receives of relay sockets closed since the last call.
    mutating func cancelClosedRelays(_ reactor: inout Reactor) {
        guard relays.pendingCancels > 0 else { return }
        for i in 0..<relays.pendingCancels { reactor.submit(.cancel(target: relays.pendingCancel(i))) }
        relays.clearPendingCancels()
    }

    /// A listener's receive ended (buffer ring empty, or the single-shot path).
    mutating func listenerReceiveEnded(_ i: Int) {
        rearmListeners[i] = true
        needsRearm = true
    }

    /// A relay socket's receive ended while the socket is still open.
    mutating func relayReceiveEnded(_ ud: UserData) {
        rearmRelays.append(ud)
        needsRearm = true
    }

    /// Re-arms receives that ended. A socket whose buffer group is all held
    /// by sends in flight waits for their completions (they wake the loop)
    /// rather than spinning on ENOBUFS. Returns how many it armed.
    mutating func rearm(_ reactor: inout Reactor) -> Int {
        needsRearm = false
        var armed = 0
        if reactor.buffers.hasFree(large: groClient) {
            for i in 0..<listeners.count where rearmListeners[i] {
                rearmListeners[i] = false
                armed += 1
                armListener(i, &reactor)
            }
        } else if (0..<listeners.count).contains(where: { rearmListeners[$0] }) {
            needsRearm = true
        }
        if !moved.toRearm.isEmpty {
            if reactor.buffers.hasFree(large: groClient) {
                for ud in moved.toRearm {
                    if let s = moved.live(slot: ud.slot, generation: ud.generation) {
                        armed += 1
                        armMoved(slot: ud.slot, generation: ud.generation, fd: s.fd, &reactor)
                    }
                }
                moved.clearRearms()
            } else {
                needsRearm = true
            }
        }
        guard !rearmRelays.isEmpty else { return armed }
        guard reactor.buffers.hasFree(large: groPeer) else {
            needsRearm = true
            return armed
        }
        for i in 0..<rearmRelays.count {
            let ud = rearmRelays[i]
            if let s = relays.live(slot: ud.slot, generation: ud.generation) {
                armed += 1
                armRelay(slot: ud.slot, generation: ud.generation, fd: s.fd, &reactor)
            }
        }
        rearmRelays.removeAll(keepingCapacity: true)
        return armed
    }

    // MARK: Sending

    /// Hands the batch's sends to the reactor (one SENDMSG per group).
    @inline(__always)
    mutating func flushSends(_ reactor: inout Reactor) -> Int {
        guard batcher.pendingOperations > 0 else { return 0 }
        return batcher.flush { op, fd, message in
            reactor.submit(.sendMessage(socket: fd, message: message, userData: UserData(kind: .send, slot: op)))
            return true
        }
    }

    /// A SENDMSG finished: its buffers go back; a GSO send the kernel
    /// refuses turns GSO off for this worker. Returns what it carried and
    /// whether GSO was just turned off.
    @inline(__always)
    mutating func sendCompleted(op: UInt32, result: Int32, _ buffers: inout ReceiveBuffers)
        -> (finished: SendBatcher.Finished, gsoTurnedOff: Bool)
    {
        let done = batcher.complete(op) { handle in buffers.release(handle) }
        if result < 0 && done.usedGSO && (result == -EINVAL || result == -EIO || result == -ENOPROTOOPT) && gsoEnabled {
            gsoEnabled = false
            batcher.disableGSO()
            return (done, true)
        }
        return (done, false)
    }

    /// Queues `bytes` for `peer` on relay socket `fd`: pointing into receive
    /// buffer `buffer` (which the send then holds), or, for bytes outside the
    /// receive buffers (a frame gathered from a stream), copied into the
    /// send's own scratch. False when no send operation is free or the
    /// bytes do not fit the scratch.
    @inline(__always)
    mutating func sendToPeer(
        fd: Int32, peer: TransportAddress, bytes: UnsafeRawBufferPointer, buffer: UInt16?, _ buffers: inout ReceiveBuffers
    ) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        guard let h = buffer else {
            guard bytes.count <= SendBatcher.scratchSize else { return false }
            return batcher.enqueueGenerated(fd: fd, to: peer) { out in
                out.copyMemory(from: bytes)
                return bytes.count
            }
        }
        guard batcher.enqueue(fd: fd, to: peer, bytes: base, count: bytes.count, buffer: h) else { return false }
        buffers.retain(h)
        return true
    }

    /// Queues a datagram for a UDP client on listener `fd`: `prefix` (a
    /// header built outside the buffer), the bytes in receive buffer `h`,
    /// then `padding` zeros.
    @inline(__always)
    mutating func sendToClient(
        fd: Int32, client: TransportAddress, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer,
        count: Int, padding: Int, buffer h: UInt16, _ buffers: inout ReceiveBuffers
    ) -> Bool {
        guard
            batcher.enqueue(
                fd: fd, to: client, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count,
                padding: padding, buffer: h)
        else { return false }
        buffers.retain(h)
        return true
    }

    /// Queues a generated message (a STUN response, a DTLS datagram) for a
    /// client: copied, up to `SendBatcher.largeSize` bytes when the batcher
    /// has large areas (DTLS on), else `SendBatcher.scratchSize`.
    mutating func reply(fd: Int32, to client: TransportAddress, _ message: UnsafeRawBufferPointer) -> Bool {
        batcher.enqueueCopy(fd: fd, to: client, message)
    }

    /// DTLS datagrams bigger than a send's scratch in flight at once per
    /// worker (18 KiB each); more are dropped (no_send_op) until sends complete.
    static let dtlsLargeAreas = 32
}
