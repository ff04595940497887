import STUN
import TURN

// The worker's side of the kernel fast path: it keeps its entries in step
// with the TURN tables and counts what the kernel relayed as relayed.
extension Worker {
    /// Re-reads what TURN says about `allocation` and updates its entries.
    mutating func syncFastPath(_ allocation: AllocationID, now: MonotonicTime) {
        guard fastPath.enabled else { return }
        let before = fastPath.count
        let routes = turn.offloadRoutes(of: allocation, now: now)
        if let gone = fastPath.sync(allocation, routes: routes, now: now.seconds) { countOffloaded(gone) }
        let after = fastPath.count
        if after > before { counters.add(.offloadEntriesWritten, after - before) }
        if after < before { counters.add(.offloadEntriesDeleted, before - after) }
    }

    /// After a request from a UDP client: ChannelBind, CreatePermission and
    /// Refresh change what may be offloaded (the method, read from the
    /// request's message type).
    @inline(__always)
    mutating func syncFastPathAfterRequest(_ request: UnsafeRawBufferPointer, fiveTuple: FiveTuple, now: MonotonicTime) {
        guard fastPath.enabled, fiveTuple.transport == .udp, request.count >= 2 else { return }
        let method = STUNMessageType(rawValue: UInt16(request[0]) << 8 | UInt16(request[1])).method
        guard method == .channelBind || method == .createPermission || method == .refresh,
            let a = turn.allocation(for: fiveTuple)
        else { return }
        syncFastPath(a, now: now)
    }

    /// An allocation moved to a new client 5-tuple (RFC 8016): its entries
    /// go (they forward to and from the old one); the caller's
    /// `syncFastPathAfterRequest` then writes them for the new 5-tuple.
    mutating func moveFastPath(_ allocation: AllocationID, now: MonotonicTime) {
        guard fastPath.enabled else { return }
        let before = fastPath.count
        if let gone = fastPath.sync(allocation, routes: [], now: now.seconds) { countOffloaded(gone) }
        counters.add(.offloadEntriesDeleted, before - fastPath.count)
    }

    /// An allocation ended: its entries go, and what they relayed since the
    /// last tick is added to its final counts (for its log line).
    mutating func removeFastPath(_ removed: inout RemovedAllocation, now: MonotonicTime) {
        guard fastPath.enabled else { return }
        let before = fastPath.count
        if let gone = fastPath.sync(removed.id, routes: [], now: now.seconds) {
            countOffloaded(gone)
            removed.counters.packetsToPeer &+= gone.packetsToPeer
            removed.counters.bytesToPeer &+= gone.bytesToPeer
            removed.counters.packetsToClient &+= gone.packetsToClient
            removed.counters.bytesToClient &+= gone.bytesToClient
        }
        counters.add(.offloadEntriesDeleted, before - fastPath.count)
    }

    /// Once a second: what the kernel relayed, and entries whose channel,
    /// permission or allocation has run out (or been refreshed) re-checked.
    mutating func fastPathTick(now: MonotonicTime) {
        guard fastPath.enabled else { return }
        let (due, relayed) = fastPath.tick(now: now.seconds)
        for r in relayed { countOffloaded(r) }
        for a in due { syncFastPath(a, now: now) }
    }

    /// After a reload: the peer policy may now deny a peer.
    mutating func resyncFastPath(now: MonotonicTime) {
        guard fastPath.enabled else { return }
        for a in fastPath.allocations { syncFastPath(a, now: now) }
    }

    /// At shutdown: every entry deleted (before the program is detached).
    mutating func clearFastPath(now: MonotonicTime) {
        guard fastPath.enabled else { return }
        for a in fastPath.allocations {
            if let gone = fastPath.sync(a, routes: [], now: now.seconds) { countOffloaded(gone) }
        }
    }

    /// Kernel-relayed traffic counts as relayed (the worker's totals and the
    /// allocation's) and as offloaded.
    private mutating func countOffloaded(_ r: FastPathPart.Relayed) {
        counters.add(.offloadPacketsToPeers, Int(r.packetsToPeer))
        counters.add(.offloadBytesToPeers, Int(r.bytesToPeer))
        counters.add(.offloadPacketsToClients, Int(r.packetsToClient))
        counters.add(.offloadBytesToClients, Int(r.bytesToClient))
        counters.add(.packetsFromClients, Int(r.packetsToPeer))
        counters.add(.packetsToPeers, Int(r.packetsToPeer))
        counters.add(.bytesToPeers, Int(r.bytesToPeer))
        counters.add(.packetsFromPeers, Int(r.packetsToClient))
        counters.add(.packetsToClients, Int(r.packetsToClient))
        counters.add(.bytesToClients, Int(r.bytesToClient))
        turn.countOffloaded(
            r.allocation, packetsToPeer: r.packetsToPeer, bytesToPeer: r.bytesToPeer,
            packetsToClient: r.packetsToClient, bytesToClient: r.bytesToClient)
    }
}
