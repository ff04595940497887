import Glibc
import STUN
import URing

/// Collects the datagrams a worker produces while draining one CQE batch and
/// turns them into as few SENDMSG operations as possible.
///
/// Datagrams are grouped by (socket, destination, segment size). A group of
/// 2...`maxSegments` datagrams of equal size (the last may be shorter) becomes
/// one SENDMSG with a `UDP_SEGMENT` control message and one iovec per
/// datagram, each pointing straight into the receive buffer it arrived in: the
/// payload is never copied. A datagram taken from a GRO train, where there is
/// no room to write a header in place, gets up to three iovecs: a prefix
/// (ChannelData or Data-indication header, copied into the op's scratch), the
/// payload in the receive buffer, and zero padding. The buffers go back to
/// the buffer ring when the send completes (`complete(_:)` hands their IDs back).
///
/// Storage, all allocated once in `init`, for `capacity` send operations:
/// - `slots`, URing's ``SendMessageSlots``: per op its `msghdr`, destination
///   `sockaddr_storage`, `maxIovecs` iovecs and `UDP_SEGMENT` cmsg space;
///   `flush` fills the header with `SendMessageSlots.prepare`, which also
///   writes the cmsg (`ControlMessages.writeUDPSegment`);
/// - `meta`: one `OpMeta` per op (socket, destination, sizes, grouping state);
/// - `bufferIDs`: `kernelMaxSegments` receive-buffer IDs per op;
/// - `scratch`: `scratchSize` bytes per op for copied prefixes or a generated
///   message (STUN response);
/// - `large`: `largeAreas` areas of `largeSize` bytes (none unless asked
///   for: DTLS on) for a copied datagram bigger than the scratch (a DTLS
///   record of a large peer datagram), each held by one op until it completes;
/// - the free list, the pending list, the open-group table and four zero bytes.
/// Nothing here allocates, retains or locks per datagram.
///
/// Invariant for the unsafe code below: every pointer is derived from one of
/// the allocations made in `init` (here or in `slots`) for an op index
/// `op < capacity`, at `op * kernelMaxSegments` buffer IDs, `op * scratchSize`
/// scratch bytes or `slots`' own slot `op`, or for a large area index
/// `a < largeAreas` at `a * largeSize` bytes; an op's `msghdr` and iovecs point
/// only into the same op's slot and scratch, the large area it holds
/// (`OpMeta.large`), at `zeros`, or into receive buffers that stay owned by
/// the op until `complete`.
public struct SendBatcher: ~Copyable {
    /// Kernel limit on segments per GSO send (UDP_MAX_SEGMENTS).
    public static let kernelMaxSegments = 64
    /// A GSO send must fit one IP datagram's 16-bit length.
    public static let maxGSOBytes = 65_000
    /// Largest datagram grouped into a GSO send. The kernel refuses (EINVAL)
    /// a segment that with its IP and UDP headers exceeds the route's MTU, so
    /// anything that would not fit a 1500-byte MTU over IPv6 (1500 - 40 - 8)
    /// is sent alone, where the kernel fragments it as for any UDP send.
    public static let maxSegmentBytes = 1_452
    /// Largest prefix per datagram (a Data indication for an IPv6 peer is 48).
    public static let maxPrefix = 48
    /// Room for a generated message (STUN response), or for the prefixes of a
    /// full group, in each op.
    public static let scratchSize = kernelMaxSegments * maxPrefix
    /// A large area: the largest DTLS 1.2 record (2^14 + 2048 bytes of
    /// ciphertext, RFC 5246 §6.2.3, plus its 13-byte header), rounded up.
    public static let largeSize = 18_496
    /// Up to three iovecs per datagram: prefix, payload, padding.
    static let maxIovecs = kernelMaxSegments * 3

    public let capacity: Int
    /// Datagrams per send: 1 when GSO is off, else up to `kernelMaxSegments`.
    public private(set) var maxSegments: Int

    /// Each op's `msghdr`, destination, iovecs and `UDP_SEGMENT` cmsg: slot
    /// `op` of these belongs to op `op`.
    private let slots: SendMessageSlots
    /// `kernelMaxSegments` receive-buffer IDs per op, one per datagram.
    private let bufferIDStorage: UnsafeMutablePointer<UInt16>
    /// `scratchSize` bytes per op (a multiple of 64, so each op's area keeps
    /// the allocation's 64-byte alignment): prefixes at `datagram * maxPrefix`,
    /// or one generated message from offset 0.
    private let scratchStorage: UnsafeMutableRawPointer
    private let meta: UnsafeMutablePointer<OpMeta>
    private let freeOps: UnsafeMutablePointer<UInt32>
    private var freeCount: Int
    /// Ops filled during this batch, in order; flushed by `flush`.
    private let pending: UnsafeMutablePointer<UInt32>
    private var pendingCount = 0
    /// Direct-mapped index of the group still open for each (fd, destination)
    /// hash: op + 1, or 0. A collision simply opens a new group.
    private let openGroups: UnsafeMutablePointer<UInt32>
    private static let openGroupSlots = 256
    /// Four zero bytes: the padding iovec of Data indications.
    private let zeros: UnsafeMutableRawPointer
    /// `largeAreas` areas of `largeSize` bytes, and the free ones' indices.
    public let largeAreas: Int
    private let largeStorage: UnsafeMutableRawPointer
    private let freeLarge: UnsafeMutablePointer<Int32>
    private var freeLargeCount: Int

    @usableFromInline
    struct OpMeta {
        var fd: Int32 = -1
        var destination = TransportAddress(ip: IPAddress(v4: 0), port: 0)
        var segmentSize = 0
        var datagrams = 0
        var iovecs = 0
        var bytes = 0
        var sealed = false
        var hashSlot = 0
        /// The large area this op holds, or -1.
        var large: Int32 = -1
    }

    public init(capacity: Int, gso: Bool, largeAreas: Int = 0) {
        precondition(capacity > 0 && capacity <= Int(UInt32.max))
        self.capacity = capacity
        self.maxSegments = gso ? Self.kernelMaxSegments : 1
        slots = SendMessageSlots(count: capacity, iovecsPerMessage: Self.maxIovecs)
        bufferIDStorage = .allocate(capacity: capacity * Self.kernelMaxSegments)
        bufferIDStorage.initialize(repeating: 0, count: capacity * Self.kernelMaxSegments)
        scratchStorage = .allocate(byteCount: capacity * Self.scratchSize, alignment: 64)
        scratchStorage.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.scratchSize)
        meta = .allocate(capacity: capacity)
        meta.initialize(repeating: OpMeta(), count: capacity)
        freeOps = .allocate(capacity: capacity)
        for i in 0..<capacity { freeOps[i] = UInt32(capacity - 1 - i) }
        freeCount = capacity
        pending = .allocate(capacity: capacity)
        openGroups = .allocate(capacity: Self.openGroupSlots)
        openGroups.initialize(repeating: 0, count: Self.openGroupSlots)
        zeros = .allocate(byteCount: 4, alignment: 4)
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: 4)
        precondition(largeAreas >= 0 && largeAreas <= Int(Int32.max))
        self.largeAreas = largeAreas
        largeStorage = .allocate(byteCount: max(1, largeAreas * Self.largeSize), alignment: 64)
        freeLarge = .allocate(capacity: max(1, largeAreas))
        for i in 0..<largeAreas { freeLarge[i] = Int32(largeAreas - 1 - i) }
        freeLargeCount = largeAreas
    }

    deinit {
        bufferIDStorage.deallocate()
        scratchStorage.deallocate()
        meta.deallocate()
        freeOps.deallocate()
        pending.deallocate()
        openGroups.deallocate()
        zeros.deallocate()
        largeStorage.deallocate()
        freeLarge.deallocate()
    }

    /// Free operations: when 0, new datagrams are dropped until sends complete.
    public var freeOperations: Int { freeCount }
    /// Operations waiting for `flush`.
    public var pendingOperations: Int { pendingCount }

    /// Turns GSO off for the rest of this batcher's life (the kernel refused it).
    public mutating func disableGSO() { maxSegments = 1 }

    @inline(__always)
    private func scratch(_ op: Int) -> UnsafeMutableRawPointer { scratchStorage + op * Self.scratchSize }

    @inline(__always)
    private func bufferIDs(_ op: Int) -> UnsafeMutablePointer<UInt16> {
        bufferIDStorage + op * Self.kernelMaxSegments
    }

    @inline(__always)
    private func iovecs(_ op: Int) -> UnsafeMutablePointer<iovec> { slots.iovecs(op) }

    @inline(__always)
    private static func hashSlot(fd: Int32, _ d: TransportAddress) -> Int {
        var h = UInt64(UInt32(bitPattern: fd)) &* 0x9E37_79B9_7F4A_7C15
        h ^= d.ip.low &+ (d.ip.high &* 31) &+ UInt64(d.port)
        h = (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return Int(truncatingIfNeeded: h >> 56) & (openGroupSlots - 1)
    }

    private mutating func acquire(fd: Int32, destination: TransportAddress) -> Int? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        let op = Int(freeOps[freeCount])
        meta[op] = OpMeta(fd: fd, destination: destination)
        pending[pendingCount] = UInt32(op)
        pendingCount += 1
        return op
    }

    private mutating func seal(_ op: Int) {
        guard !meta[op].sealed else { return }
        meta[op].sealed = true
        if openGroups[meta[op].hashSlot] == UInt32(op + 1) { openGroups[meta[op].hashSlot] = 0 }
    }

    /// Queues one datagram that lies in a receive buffer (`buffer` is its
    /// buffer handle, released when the send completes). Returns false when
    /// no operation is free: the caller drops the datagram.
    @inline(__always)
    public mutating func enqueue(
        fd: Int32, to destination: TransportAddress, bytes: UnsafeRawPointer, count: Int, buffer: UInt16
    ) -> Bool {
        enqueue(fd: fd, to: destination, prefix: nil, prefixLength: 0, bytes: bytes, count: count, padding: 0, buffer: buffer)
    }

    /// Queues a datagram made of `prefixLength` bytes at `prefix` (copied;
    /// at most `maxPrefix`), then `count` bytes at `bytes` in a receive buffer,
    /// then `padding` zero bytes (at most 3).
    @inline(__always)
    public mutating func enqueue(
        fd: Int32, to destination: TransportAddress, prefix: UnsafeRawPointer?, prefixLength: Int,
        bytes: UnsafeRawPointer, count: Int, padding: Int, buffer: UInt16
    ) -> Bool {
        let size = prefixLength + count + padding
        if size > Self.maxSegmentBytes {
            // Too big to be a GSO segment on a common MTU: a send of its own.
            guard let op = acquire(fd: fd, destination: destination) else { return false }
            meta[op].segmentSize = size
            meta[op].hashSlot = 0
            meta[op].sealed = true
            append(op, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count, padding: padding, buffer: buffer)
            return true
        }
        let slot = Self.hashSlot(fd: fd, destination)
        let open = Int(openGroups[slot])
        if open != 0 {
            let op = open - 1
            let m = meta[op]
            if m.fd == fd && m.destination == destination && !m.sealed && size <= m.segmentSize
                && m.bytes + size <= Self.maxGSOBytes
            {
                append(op, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count, padding: padding, buffer: buffer)
                // A shorter datagram must be the group's last; a full group closes.
                if size < m.segmentSize || meta[op].datagrams == maxSegments { seal(op) }
                return true
            }
            seal(op)
        }
        guard let op = acquire(fd: fd, destination: destination) else { return false }
        meta[op].segmentSize = size
        meta[op].hashSlot = slot
        append(op, prefix: prefix, prefixLength: prefixLength, bytes: bytes, count: count, padding: padding, buffer: buffer)
        if maxSegments > 1 {
            openGroups[slot] = UInt32(op + 1)
        } else {
            meta[op].sealed = true
        }
        return true
    }

    @inline(__always)
    private mutating func append(
        _ op: Int, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer, count: Int, padding: Int,
        buffer: UInt16
    ) {
        let d = meta[op].datagrams
        var v = meta[op].iovecs
        let iov = iovecs(op)
        if prefixLength > 0, let prefix {
            let copy = scratch(op) + d * Self.maxPrefix
            copy.copyMemory(from: prefix, byteCount: prefixLength)
            iov[v] = iovec(iov_base: copy, iov_len: prefixLength)
            v += 1
        }
        iov[v] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes), iov_len: count)
        v += 1
        if padding > 0 {
            iov[v] = iovec(iov_base: zeros, iov_len: padding)
            v += 1
        }
        bufferIDs(op)[d] = buffer
        meta[op].datagrams = d + 1
        meta[op].iovecs = v
        meta[op].bytes += prefixLength + count + padding
    }

    /// Queues a generated message (a STUN response): `write` fills the op's
    /// scratch area and returns the length (0 = nothing to send). Such a send
    /// is never grouped and holds no receive buffer.
    public mutating func enqueueGenerated(
        fd: Int32, to destination: TransportAddress, _ write: (UnsafeMutableRawBufferPointer) -> Int
    ) -> Bool {
        guard let op = acquire(fd: fd, destination: destination) else { return false }
        let area = scratch(op)
        let n = write(UnsafeMutableRawBufferPointer(start: area, count: Self.scratchSize))
        precondition(n >= 0 && n <= Self.scratchSize)
        if n == 0 {
            // Nothing to send after all: give the op back.
            pendingCount -= 1
            freeOps[freeCount] = pending[pendingCount]
            freeCount += 1
            return true
        }
        iovecs(op)[0] = iovec(iov_base: area, iov_len: n)
        meta[op].segmentSize = n
        meta[op].datagrams = 1
        meta[op].iovecs = 1
        meta[op].bytes = n
        meta[op].sealed = true
        meta[op].hashSlot = -1
        return true
    }

    /// Queues a copy of `bytes` as one datagram: in the op's scratch when it
    /// fits, else in a large area (up to `largeSize` bytes). False when no
    /// operation or large area is free, or it is bigger than both.
    public mutating func enqueueCopy(fd: Int32, to destination: TransportAddress, _ bytes: UnsafeRawBufferPointer)
        -> Bool
    {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return false }
        if bytes.count <= Self.scratchSize {
            return enqueueGenerated(fd: fd, to: destination) { out in
                out.copyMemory(from: bytes)
                return bytes.count
            }
        }
        guard bytes.count <= Self.largeSize, freeLargeCount > 0, let op = acquire(fd: fd, destination: destination)
        else { return false }
        freeLargeCount -= 1
        let large = freeLarge[freeLargeCount]
        let area = largeStorage + Int(large) * Self.largeSize
        area.copyMemory(from: source, byteCount: bytes.count)
        iovecs(op)[0] = iovec(iov_base: area, iov_len: bytes.count)
        meta[op].segmentSize = bytes.count
        meta[op].datagrams = 1
        meta[op].iovecs = 1
        meta[op].bytes = bytes.count
        meta[op].sealed = true
        meta[op].hashSlot = -1
        meta[op].large = large
        return true
    }

    /// Large areas not held by a send.
    public var freeLargeAreas: Int { freeLargeCount }

    /// Prepares every pending operation's `msghdr` and hands it to `submit`
    /// (which prepares the SENDMSG SQE and returns false if the SQ is full, in
    /// which case `flush` stops and keeps the rest pending for the next call).
    /// Returns the number of operations handed over.
    public mutating func flush(_ submit: (_ op: UInt32, _ fd: Int32, _ message: UnsafeMutablePointer<msghdr>) -> Bool)
        -> Int
    {
        var done = 0
        while done < pendingCount {
            let op = Int(pending[done])
            let m = meta[op]
            // A group of two or more is one GSO send: UDP_SEGMENT cmsg.
            let msg = slots.prepare(
                op, destination: SocketAddress(m.destination), iovecCount: m.iovecs,
                segmentSize: m.datagrams > 1 ? UInt16(m.segmentSize) : nil)
            guard submit(UInt32(op), m.fd, msg) else { break }
            done += 1
        }
        // Keep what the SQ could not take, in order.
        if done > 0 {
            let left = pendingCount - done
            if left > 0 { (pending).update(from: pending + done, count: left) }
            pendingCount = left
        }
        if pendingCount == 0 { openGroups.update(repeating: 0, count: Self.openGroupSlots) }
        else { for i in 0..<pendingCount { seal(Int(pending[i])) } }
        return done
    }

    /// What a finished send held: the caller recycles `buffers` and counts
    /// `datagrams`/`bytes` as sent (result >= 0) or dropped.
    public struct Finished {
        public var datagrams: Int
        public var bytes: Int
        public var usedGSO: Bool
    }

    /// Releases operation `op` after its SENDMSG completed, calling `recycle`
    /// for every receive buffer it held.
    @inline(__always)
    public mutating func complete(_ op: UInt32, recycle: (UInt16) -> Void) -> Finished {
        let o = Int(op)
        let m = meta[o]
        let generated = m.hashSlot < 0
        if !generated {
            let ids = bufferIDs(o)
            for i in 0..<m.datagrams { recycle(ids[i]) }
        }
        if m.large >= 0 {
            freeLarge[freeLargeCount] = m.large
            freeLargeCount += 1
        }
        freeOps[freeCount] = op
        freeCount += 1
        return Finished(datagrams: m.datagrams, bytes: m.bytes, usedGSO: m.datagrams > 1)
    }
}
