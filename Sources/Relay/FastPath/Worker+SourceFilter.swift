import STUN
import TURN

extension Worker {
    /// After the per-source limits dropped a request from `fiveTuple`: blocks
    /// that client address and port in the kernel source filter, when the
    /// filter is on and the request came in on a plain-UDP listener (the
    /// socket the filter is attached to), for as long as the limiter would
    /// drop it (SourceFilterPart). Only drops reach here, and only the first
    /// one per block makes a syscall.
    mutating func blockSource(after reason: DropReason, fiveTuple: FiveTuple, reply: ClientReply, now: MonotonicTime) {
        guard sourceFilter.enabled, fiveTuple.transport == .udp, case .datagram(let fd) = reply,
            datagram.listenerFD(for: fiveTuple.server) == fd
        else { return }
        let nanoseconds = turn.sourceBlockNanoseconds(after: reason, from: fiveTuple, now: now)
        guard nanoseconds > 0 else { return }
        let key = SourceFilterPart.key(client: fiveTuple.client, listenPort: fiveTuple.server.port)
        let failuresBefore = sourceFilter.failures
        if sourceFilter.block(key, nanoseconds: nanoseconds, now: now) {
            counters.add(.kernelSourceBlocks)
        } else if sourceFilter.failures != failuresBefore {
            counters.add(.kernelSourceBlockFailures)
        }
    }
}
