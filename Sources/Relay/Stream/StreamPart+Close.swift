import Glibc
import STUN
import TURN
import URing

// Closing connections, and the timers that close them.
extension StreamPart {
    /// Closes connection `slot`: logs why (first, so whoever sees the
    /// connection end can find it), shuts the socket down (its receive ends
    /// with 0, a send in flight fails) and closes it. The worker learns of it
    /// from `events` (`.closed`) and ends what lived with it: the allocation
    /// made over it (RFC 8656 §3.1: an allocation lives as long as its
    /// control connection), its data pair. The slot's memory is freed when
    /// the kernel is done with it. `why` nil: an ordinary close, logged at debug.
    mutating func close(_ slot: UInt32, why: String?, quietly: StaticString = "") {
        let c = connections.slots[Int(slot)]
        guard c.fd >= 0 else { return }
        if let why {
            log(.info, "\(name(c)): \(why)")
        } else {
            log(.debug, "\(name(c)): closed (\(quietly))")
        }
        Syscall.shutdownBoth(c.fd)
        if c.receiving { events.append(.cancel(UserData(kind: .streamReceive, slot: slot, generation: c.generation))) }
        Syscall.close(c.fd)
        events.append(
            .closed(
                ClosedConnection(
                    slot: slot, generation: c.generation, fiveTuple: c.fiveTuple, role: c.role,
                    allocation: c.allocation, pair: c.pair)))
        counters.add(.streamClosed)
        connections.markClosed(slot)
    }

    /// The other side of a data pair ended: close this side once it has sent
    /// what it holds.
    mutating func partnerEnded(_ slot: UInt32) {
        let i = Int(slot)
        guard connections.slots[i].fd >= 0 else { return }
        connections.slots[i].pair = .max
        if connections.slots[i].outboxCount == 0 && connections.slots[i].sending == 0 {
            close(slot, why: nil, quietly: "partner ended")
        } else {
            connections.slots[i].closeWhenDrained = true
        }
    }

    /// Once a second: handshakes that take too long, connections idle
    /// without an allocation, readers that stopped reading; and accepts that
    /// must be armed again.
    mutating func tick(now: MonotonicTime, _ reactor: inout Reactor) {
        let t = now.seconds
        for i in 0..<connections.capacity where connections.slots[i].fd >= 0 {
            let c = connections.slots[i]
            let slot = UInt32(i)
            if c.role != .client {
                // Data connections: bounded by back-pressure, ended with
                // their allocation. One whose partner is gone and whose own
                // reader takes nothing is cut short.
                if c.closeWhenDrained && t &- c.lastSendProgress >= UInt32(limits.stallSeconds) {
                    close(slot, why: "the other end closed and this one reads nothing; closing")
                }
                continue
            }
            if let tls = c.tls, !tls.isHandshakeComplete, t &- c.opened >= UInt32(limits.handshakeSeconds) {
                counters.add(.streamTimeouts)
                close(slot, why: "TLS handshake not finished in \(limits.handshakeSeconds) s; closing")
            } else if c.outboxCount > 0 && t &- c.lastSendProgress >= UInt32(limits.stallSeconds) {
                counters.add(.streamTimeouts)
                close(
                    slot,
                    why: "client reads nothing for \(limits.stallSeconds) s with \(c.outboxCount) bytes queued; closing")
            } else if c.allocation == nil && t &- c.lastReceive >= UInt32(limits.idleSeconds) {
                counters.add(.streamTimeouts)
                close(slot, why: "idle for \(limits.idleSeconds) s without an allocation; closing")
            }
        }
        for i in 0..<listeners.count where listeners[i].acceptAtTick {
            listeners[i].acceptAtTick = false
            listeners[i].needsAccept = true
        }
        rearmListeners(&reactor)
    }

    /// At shutdown: every connection closed, listeners too.
    mutating func closeAll() {
        for i in 0..<connections.capacity where connections.slots[i].fd >= 0 { close(UInt32(i), why: nil) }
        for i in 0..<listeners.count where listeners[i].fd >= 0 {
            Syscall.close(listeners[i].fd)
            listeners[i].fd = -1
        }
    }

    // MARK: Moving to another worker

    /// Stops reading `slot` because its ConnectionBind belongs to another
    /// worker. Returns true when no send is in flight (it can move now);
    /// otherwise `.readyToHandOff` follows when the send completes.
    mutating func beginHandOff(_ slot: UInt32, _ reactor: inout Reactor) -> Bool {
        let c = connections.slots[Int(slot)]
        if c.receiving {
            reactor.submit(.cancel(target: UserData(kind: .streamReceive, slot: slot, generation: c.generation)))
            reactor.flush()  // stop reading here before the owner starts
        }
        connections.slots[Int(slot)].handingOff = true
        return c.sending == 0
    }

    /// Gives up `slot` for another worker: what moves with it (descriptor,
    /// TLS session, bytes not sent yet). The slot no longer owns them.
    mutating func takeForHandOff(_ slot: UInt32, request: [UInt8]) -> StreamHandoff {
        let c = connections.slots[Int(slot)]
        var unsent = [UInt8]()
        if let out = c.outbox, c.outboxCount > 0 {
            unsent.reserveCapacity(c.outboxCount)
            let first = min(c.outboxCount, c.outboxCapacity - c.outboxHead)
            unsent += UnsafeRawBufferPointer(start: out + c.outboxHead, count: first)
            unsent += UnsafeRawBufferPointer(start: out, count: c.outboxCount - first)
        }
        connections.markHandedOff(slot)
        return StreamHandoff(fd: c.fd, fiveTuple: c.fiveTuple, tls: c.tls, request: request, unsent: unsent)
    }

    /// A connection that could not be handed over is closed here.
    mutating func abandonHandOff(_ slot: UInt32, why: String) {
        connections.slots[Int(slot)].handingOff = false
        close(slot, why: why)
    }

    /// RFC 6062 ConnectionBind succeeded on client connection `slot`: it
    /// becomes the client side of data pair `pair`. Its multishot receive
    /// (for STUN) is cancelled (a single-shot one, see `singleShotClients`,
    /// has ended); from now on it reads one buffer at a time.
    mutating func becomeDataConnection(_ slot: UInt32, pair: UInt32, _ reactor: inout Reactor) {
        let i = Int(slot)
        connections.slots[i].role = .clientData
        connections.slots[i].pair = pair
        if connections.slots[i].receiving && reactor.multishot && !singleShotClients {
            reactor.submit(
                .cancel(target: UserData(kind: .streamReceive, slot: slot, generation: connections.slots[i].generation)))
        }
        wantReceive(slot)
    }

    /// Peer connection `slot` is the peer side of data pair `pair`.
    mutating func setPair(_ slot: UInt32, _ pair: UInt32) { connections.slots[Int(slot)].pair = pair }
}
