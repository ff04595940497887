import Glibc
import STUN
import TURN
import URing

// Connections coming in: multishot ACCEPT on each listener, the limits a new
// connection must pass, TLS sessions, and connections opened by others
// (peer connections of RFC 6062, connections handed over by another worker).
extension StreamPart {
    mutating func armListener(_ i: Int, _ reactor: inout Reactor) {
        reactor.submit(.acceptMultishot(socket: listeners[i].fd, userData: UserData(kind: .streamAccept, slot: UInt32(i))))
    }

    /// Arms the accepts that ended.
    mutating func rearmListeners(_ reactor: inout Reactor) {
        needsRearm = false
        for i in 0..<listeners.count where listeners[i].needsAccept {
            listeners[i].needsAccept = false
            armListener(i, &reactor)
        }
    }

    /// An ACCEPT completion on listener `i`: a new connection, or an error.
    mutating func acceptCompleted(
        _ cqe: Completion, listener i: Int, stopping: Bool, now: MonotonicTime, _ reactor: inout Reactor
    ) {
        if cqe.result >= 0 {
            accepted(fd: cqe.result, listener: i, now: now, &reactor)
        } else if cqe.result != -ECANCELED {
            noteRefusal("accept on \(listeners[i].local) failed: \(Errno(rawValue: -cqe.result))", now: now)
        }
        if !cqe.hasMore && !stopping {
            if cqe.result == -EMFILE || cqe.result == -ENFILE || cqe.result == -ENOMEM {
                listeners[i].acceptAtTick = true
            } else {
                listeners[i].needsAccept = true
                needsRearm = true
            }
        }
    }

    private mutating func accepted(fd: Int32, listener i: Int, now: MonotonicTime, _ reactor: inout Reactor) {
        let socket = StreamSocket(rawValue: fd)
        let listener = listeners[i]
        guard let peerAddress = try? socket.peerAddress() else {
            socket.close()
            return
        }
        let peer = TransportAddress(peerAddress)
        var refusal: String? = nil
        if connections.openCount >= connections.capacity {
            refusal = "connection from \(peer) refused: \(connections.capacity) connections open on worker \(workerIndex) (--tcp-connections)"
        } else if limits.perSource > 0 && connections.count(from: peer.ip) >= limits.perSource {
            refusal = "connection from \(peer) refused: \(limits.perSource) connections from \(peer.ip) already open on worker \(workerIndex) (--tcp-connections-per-ip)"
        }
        var tls: TLSStream? = nil
        if refusal == nil && listener.tls {
            if let context = tlsContext {
                do { tls = try TLSStream(server: context) } catch { refusal = "TLS session for \(peer): \(error)" }
            } else {
                refusal = "TLS connection from \(peer) refused: no certificate loaded"
            }
        }
        if let why = refusal {
            counters.add(.streamRefused)
            noteRefusal(why, now: now)
            socket.close()
            return
        }
        try? socket.setNoDelay()
        let fiveTuple = FiveTuple(client: peer, server: listener.local, transport: listener.tls ? .tls : .tcp)
        guard let slot = connections.open(fd: fd, fiveTuple: fiveTuple, tls: tls, now: now.seconds) else {
            socket.close()
            return
        }
        counters.add(.streamAccepted)
        connections.slots[Int(slot)].needsReceive = true
        armReceive(slot, &reactor)
    }

    /// Refusals and accept errors: logged at most once a second per worker.
    mutating func noteRefusal(_ why: String, now: MonotonicTime) {
        if now.nanoseconds &- lastRefusalLog < 1_000_000_000 { return }
        lastRefusalLog = now.nanoseconds
        log(.warning, why)
    }

    /// A TCP connection to or from a peer (RFC 6062), as a peer-side data
    /// connection. Nil (and `fd` left to the caller) when the table is full.
    mutating func openPeerConnection(fd: Int32, fiveTuple: FiveTuple, now: MonotonicTime) -> UInt32? {
        guard let slot = connections.open(fd: fd, fiveTuple: fiveTuple, tls: nil, now: now.seconds) else { return nil }
        connections.slots[Int(slot)].role = .peer
        try? StreamSocket(rawValue: fd).setNoDelay()
        return slot
    }

    /// A connection another worker handed over: its unsent bytes go out
    /// first, and `request` (its ConnectionBind) is the first frame
    /// `nextFrame` returns. Nil when the table is full (the caller closes it).
    mutating func adopt(_ h: StreamHandoff, now: MonotonicTime) -> UInt32? {
        guard let slot = connections.open(fd: h.fd, fiveTuple: h.fiveTuple, tls: h.tls, now: now.seconds) else {
            return nil
        }
        if !h.unsent.isEmpty {
            h.unsent.withUnsafeBytes { u in
                connections.slots[Int(slot)].append(
                    u.baseAddress!, count: min(u.count, connections.slots[Int(slot)].outboxFree))
            }
            connections.markDirty(slot)
        }
        h.request.withUnsafeBytes { r in _ = appendToInbox(slot, r) }
        return slot
    }

    /// Asks for a receive on `slot` at the next flush (once it has room).
    mutating func wantReceive(_ slot: UInt32) {
        guard connections.slots[Int(slot)].fd >= 0 else { return }
        connections.slots[Int(slot)].needsReceive = true
        connections.markDirty(slot)
    }
}
