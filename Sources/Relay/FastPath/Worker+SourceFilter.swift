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
        guard cameOnFilteredListener(fiveTuple, reply) else { return }
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

    /// After a datagram from `fiveTuple` was dropped with no answer
    /// (ChannelData with no route, unparsable bytes): when its source sends
    /// more of those than the per-source rate allows and the 5-tuple has no
    /// allocation, blocks that client address and port's datagrams that are
    /// not STUN in the kernel source filter (SourceFilterPart.Scope.notSTUN).
    /// Its requests still reach the worker. A datagram that starts with a
    /// STUN header is not charged: such a block would not drop it.
    @inline(__always)
    mutating func noteUnanswered(
        _ bytes: UnsafeRawBufferPointer, fiveTuple: FiveTuple, reply: ClientReply, now: MonotonicTime
    ) {
        guard sourceFilter.enabled, !SourceFilterPart.startsWithSTUNHeader(bytes),
            cameOnFilteredListener(fiveTuple, reply)
        else { return }
        let nanoseconds = turn.unansweredBlockNanoseconds(from: fiveTuple, now: now)
        guard nanoseconds > 0 else { return }
        let key = SourceFilterPart.key(client: fiveTuple.client, listenPort: fiveTuple.server.port)
        let failuresBefore = sourceFilter.failures
        if sourceFilter.block(key, nanoseconds: nanoseconds, scope: .notSTUN, now: now) {
            counters.add(.kernelSourceBlocks)
        } else if sourceFilter.failures != failuresBefore {
            counters.add(.kernelSourceBlockFailures)
        }
    }

    /// An allocation was made for `fiveTuple`, or moved to it: lifts any
    /// kernel block of that client address and port (one for datagrams
    /// that are not STUN, written while it had no allocation), so its
    /// ChannelData flows at once.
    mutating func unblockSource(_ fiveTuple: FiveTuple, reply: ClientReply, now: MonotonicTime) {
        guard cameOnFilteredListener(fiveTuple, reply) else { return }
        let key = SourceFilterPart.key(client: fiveTuple.client, listenPort: fiveTuple.server.port)
        if !sourceFilter.unblock(key, now: now) { counters.add(.kernelSourceBlockFailures) }
    }

    /// After a reload: the kernel source filter (when loaded) is attached to
    /// the listeners while a per-source limit is on, and detached when the
    /// reload turned them all off (DatagramPart.setSourceFilter).
    mutating func followSourceLimits(_ limits: SourceRateLimits) {
        let wasAttached = datagram.sourceFilterAttached
        let failures = datagram.setSourceFilter(limitsOn: !limits.isOff)
        for why in failures { log(.warning, "worker \(index): \(why); requests from it are limited in user space only") }
        if index == 0, datagram.sourceFilterAttached != wasAttached {
            log(
                .info,
                datagram.sourceFilterAttached
                    ? "kernel source filter: on (a per-source limit was turned on)"
                    : "kernel source filter: detached (every per-source limit is off)")
        }
    }

    /// Whether the filter is on and `fiveTuple` came in on a plain-UDP
    /// listener (the sockets the filter is attached to).
    @inline(__always)
    func cameOnFilteredListener(_ fiveTuple: FiveTuple, _ reply: ClientReply) -> Bool {
        guard sourceFilter.enabled, fiveTuple.transport == .udp, case .datagram(let fd) = reply else { return false }
        return datagram.listenerFD(for: fiveTuple.server) == fd
    }
}
