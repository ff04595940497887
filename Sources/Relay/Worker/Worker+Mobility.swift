import Glibc
import STUN
import TURN
import URing

/// A Refresh with a mobility ticket that one worker received and hands to
/// the worker its ticket names (RFC 8016 across workers). Control path: the
/// bytes are copied once, at the hand-over.
struct HandedMove: Sendable {
    /// The Refresh request as received.
    var bytes: [UInt8]
    /// The client's new address and the listening address it sent to.
    var client: TransportAddress
    var server: TransportAddress
    /// The worker that received it (for the log).
    var from: Int
}

// RFC 8016 moves across workers. SO_REUSEPORT hashes each client 5-tuple to
// one worker; a client that moved may now be hashed to a worker (B) other
// than the one owning its allocation (A, named in the ticket). B hands the
// Refresh to A; A checks and answers it through the normal TURN path, and on
// success opens a socket bound to the listener's address and connected to
// the client (Datagram/MovedSockets.swift), so the kernel gives the client's
// datagrams to A from then on.
extension Worker {
    /// On B: the ticket names worker `owner`; hand the request over. A full
    /// inbox drops it (the client retransmits).
    mutating func forwardMove(_ request: UnsafeMutableRawBufferPointer, fiveTuple: FiveTuple, to owner: Int) {
        guard owner != index, owner < siblings.count, fiveTuple.transport == .udp else {
            counters.add(.dropsNoRoute)
            return
        }
        let move = HandedMove(
            bytes: Array(UnsafeRawBufferPointer(request)), client: fiveTuple.client, server: fiveTuple.server, from: index)
        if !siblings[owner].send(.mobilityMove(move)) { counters.add(.dropsNoRoute) }
    }

    /// On A: a Refresh handed over by another worker. The socket for the new
    /// 5-tuple is opened first; without one (table full, bind or connect
    /// failed) TURN refuses the move with 508 and nothing changes. The
    /// answer goes out of this worker's copy of the listener (same source
    /// address and port as the client sent to).
    mutating func takeMove(_ move: HandedMove, now: MonotonicTime) {
        guard let li = datagram.listenerIndex(for: move.server), !move.bytes.isEmpty else { return }
        let local = datagram.listeners[li].local
        let fiveTuple = FiveTuple(client: move.client, server: local, transport: .udp)
        var fd: Int32 = -1
        // A retransmission handed over after the move was done is answered
        // from the response cache: no second socket for the same client
        // (the two would share its datagrams until the spare one closed).
        if datagram.moved.hasRoom && turn.allocation(for: fiveTuple) == nil {
            do { fd = try MovedSockets.open(local: local, client: move.client, gro: datagram.groClient) } catch {
                log(.warning, "worker \(index): cannot open a socket for \(move.client) via \(local) (mobility): \(error)")
            }
        }
        handedMove = fd >= 0 ? HandedMoveSocket(fd: fd, listener: li, from: move.from) : nil
        turn.crossWorkerMoveSocket = fd >= 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: move.bytes.count, alignment: 8)
        scratch.copyMemory(from: UnsafeRawBufferPointer(start: move.bytes, count: move.bytes.count))
        handleSTUN(
            scratch, fiveTuple: fiveTuple,
            reply: .datagram(datagram.listeners[li].fd), buffer: nil, now: now)
        scratch.deallocate()
        turn.crossWorkerMoveSocket = nil
        // Not taken: the request was refused (or answered from the cache).
        if let h = handedMove { Syscall.close(h.fd) }
        handedMove = nil
    }

    /// After a successful move: if it was handed over, the socket opened for
    /// it becomes the allocation's and its receive is armed.
    mutating func adoptCrossWorkerMove(_ allocation: AllocationID) {
        guard let h = handedMove else { return }
        handedMove = nil
        guard let (slot, generation) = datagram.moved.adopt(fd: h.fd, allocation: allocation, listener: h.listener)
        else {
            // Cannot happen: `takeMove` opened it only with room in the table.
            Syscall.close(h.fd)
            return
        }
        datagram.armMoved(slot: slot, generation: generation, fd: h.fd, &reactor)
        counters.add(.allocationsMovedAcross)
        log(.info, "allocation \(allocation.slot).\(allocation.generation) moved across workers: handed over by worker \(h.from) to worker \(index)")
    }

    /// The allocation ended or moved again: its connected socket, if any, goes.
    mutating func closeMovedSocket(of allocation: AllocationID) {
        datagram.moved.close(allocation: allocation)
        datagram.cancelClosedMoved(&reactor)
    }
}

/// The socket `takeMove` opened for the Refresh it is handling.
struct HandedMoveSocket {
    var fd: Int32
    var listener: Int
    var from: Int
}
