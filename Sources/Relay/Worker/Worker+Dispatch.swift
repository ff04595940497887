import Glibc
import STUN
import TURN
import URing

// Each completion goes to the part that owns its kind (Worker/CompletionKind.swift).
//
// Receive buffers are reference counted (see ReceiveBuffers): the dispatcher
// holds one reference while it looks at a buffer, each queued send that
// points into it holds another, and whoever drops the last one gives the
// buffer back. A buffer from a UDP_GRO socket holds a train of equal-size
// datagrams, walked one by one; each may go out in a different send.
extension Worker {
    @inline(never)
    mutating func dispatch(_ cqe: Completion, now: MonotonicTime) {
        let ud = cqe.userData
        switch ud.kind {
        case .listenerReceive:
            if let id = cqe.bufferID {
                let h = ReceiveBuffers.handle(id: id, large: datagram.groClient)
                reactor.buffers.took(h)
                if cqe.result > 0 {
                    if datagram.listeners[Int(ud.slot)].dtls {
                        fromDTLSClient(listener: Int(ud.slot), buffer: h, length: cqe.result, now: now)
                    } else {
                        fromClient(listener: Int(ud.slot), buffer: h, length: cqe.result, now: now)
                    }
                }
                reactor.buffers.release(h)
            }
            if !reactor.multishot || !cqe.hasMore {
                if cqe.result == -ENOBUFS { counters.add(.enobufs) }
                datagram.listenerReceiveEnded(Int(ud.slot))
            }
        case .relayReceive:
            let live = datagram.relays.live(slot: ud.slot, generation: ud.generation)
            if let id = cqe.bufferID {
                let h = ReceiveBuffers.handle(id: id, large: datagram.groPeer)
                reactor.buffers.took(h)
                if cqe.result > 0, let s = live {
                    fromPeer(relaySlot: Int(ud.slot), socket: s, buffer: h, length: cqe.result, now: now)
                }
                reactor.buffers.release(h)
            }
            if live != nil && (!reactor.multishot || !cqe.hasMore) {
                if cqe.result == -ENOBUFS { counters.add(.enobufs) }
                datagram.relayReceiveEnded(ud)
            }
        case .movedReceive:
            let live = datagram.moved.live(slot: ud.slot, generation: ud.generation)
            if let id = cqe.bufferID {
                let h = ReceiveBuffers.handle(id: id, large: datagram.groClient)
                reactor.buffers.took(h)
                if cqe.result > 0, let s = live {
                    fromClient(
                        listener: s.listener, header: datagram.movedHeader(ud.slot), buffer: h, length: cqe.result,
                        now: now)
                }
                reactor.buffers.release(h)
            }
            if live != nil && (!reactor.multishot || !cqe.hasMore) {
                if cqe.result == -ENOBUFS { counters.add(.enobufs) }
                datagram.movedReceiveEnded(ud)
            }
        case .send:
            sendCompleted(op: ud.slot, result: cqe.result)
        case .streamReceive:
            streamReceiveCompleted(cqe, now: now)
        case .streamSend:
            streamSendCompleted(cqe, now: now)
        case .streamAccept:
            acceptCompleted(cqe, listener: Int(ud.slot), now: now)
        case .streamConnect:
            connectCompleted(cqe, now: now)
        case .relayAccept:
            relayAcceptCompleted(cqe, now: now)
        case .wake:
            takeControlMessages(now: now)
            checkStopRequest(now: now)
        default:
            break
        }
    }

    @inline(__always)
    mutating func sendCompleted(op: UInt32, result: Int32) {
        let (done, gsoTurnedOff) = datagram.sendCompleted(op: op, result: result, &reactor.buffers)
        if result < 0 {
            counters.add(.dropsSendError, done.datagrams)
            if gsoTurnedOff {
                log(.warning, "worker \(index): the kernel refused a UDP_SEGMENT (GSO) send (\(Errno(rawValue: -result))); GSO is off for this worker from now on")
            }
        } else {
            counters.add(.datagramsSent, done.datagrams)
            if done.usedGSO { counters.add(.gsoSends) }
        }
    }
}
