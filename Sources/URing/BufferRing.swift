import CURing

#if canImport(Glibc)
import Glibc
#endif

/// A provided buffer ring: `count` buffers of `bufferSize` bytes that the
/// kernel picks from for receives with `IOSQE_BUFFER_SELECT` in group
/// ``groupID`` (5.19+).
///
/// Memory: one anonymous `mmap` holds the ring of `io_uring_buf` entries
/// (page-aligned, as the kernel requires) followed by the buffers. Buffer `i`
/// starts at `buffers + i * bufferSize`.
///
/// Ownership cycle of a buffer: in the ring (kernel may fill it) → named by a
/// CQE's ``Completion/bufferID`` (yours: parse it, forward it, keep it until
/// the send that points into it completes) → ``recycle(_:)`` →
/// ``publishRecycled()`` (back in the ring). When the ring runs dry a
/// multishot receive ends with `-ENOBUFS` and no `F_MORE`: recycle, publish,
/// then re-arm it.
///
/// Lifetime: the kernel holds the registration until ``unregister(from:)``
/// or until the ``Ring`` is torn down. Destroy the `Ring` first (or
/// unregister) before this value goes away; its `deinit` unmaps the memory,
/// so a kernel that still had the group registered would write into unmapped
/// pages (fails with EFAULT rather than corrupting the heap, but it is a bug).
public struct BufferRing: ~Copyable {
    /// The buffer group ID to pass in receive SQEs.
    public let groupID: UInt16
    /// Number of buffers (a power of two, at most 32768).
    public let count: Int
    /// Bytes per buffer.
    public let bufferSize: Int
    @usableFromInline let entries: UnsafeMutablePointer<io_uring_buf_ring>
    @usableFromInline let buffers: UnsafeMutableRawPointer
    @usableFromInline let mask: Int32
    @usableFromInline var staged: Int32 = 0
    /// Unregistered rings only: the next entry ``take()`` reads.
    @usableFromInline var head: UInt16 = 0
    let mapping: UnsafeMutableRawPointer
    let mappingLength: Int

    /// Allocates the buffers, registers them with `ring` as group `groupID`
    /// and hands all of them to the kernel.
    ///
    /// The corresponding C function is `io_uring_register_buf_ring`.
    public init(ring: inout Ring, groupID: UInt16, count: Int, bufferSize: Int) throws(URingError) {
        let (m, ringBytes, length) = try Self.map(count: count, bufferSize: bufferSize)
        var reg = io_uring_buf_reg()
        reg.ring_addr = UInt64(UInt(bitPattern: m))
        reg.ring_entries = UInt32(count)
        reg.bgid = groupID
        let r = io_uring_register_buf_ring(ring.raw, &reg, 0)
        guard r == 0 else {
            munmap(m, length)
            throw .register(call: "io_uring_register_buf_ring", Errno(rawValue: -r))
        }
        self.init(mapping: m, ringBytes: ringBytes, length: length, groupID: groupID, count: count, bufferSize: bufferSize)
    }

    /// The same ring of buffers with no io_uring behind it: the process
    /// plays the kernel's part and takes buffers itself with ``take()``
    /// (the epoll backend, where io_uring is not available). Recycling and
    /// publishing work exactly as with a registered ring.
    public init(unregisteredGroupID groupID: UInt16, count: Int, bufferSize: Int) throws(URingError) {
        let (m, ringBytes, length) = try Self.map(count: count, bufferSize: bufferSize)
        self.init(mapping: m, ringBytes: ringBytes, length: length, groupID: groupID, count: count, bufferSize: bufferSize)
    }

    private static func map(count: Int, bufferSize: Int) throws(URingError) -> (UnsafeMutableRawPointer, Int, Int) {
        guard count > 0, count <= 32768, count & (count - 1) == 0 else {
            throw .invalid("buffer count \(count) must be a power of two in 1...32768")
        }
        guard bufferSize > 0, bufferSize <= Int(UInt32.max) else {
            throw .invalid("buffer size \(bufferSize) out of range")
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let ringBytes = (count * MemoryLayout<io_uring_buf>.size + page - 1) / page * page
        let length = ringBytes + count * bufferSize
        guard let m = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            m != MAP_FAILED
        else {
            throw .memory(call: "mmap", .current)
        }
        return (m, ringBytes, length)
    }

    private init(
        mapping m: UnsafeMutableRawPointer, ringBytes: Int, length: Int, groupID: UInt16, count: Int, bufferSize: Int
    ) {
        mapping = m
        mappingLength = length
        entries = m.bindMemory(to: io_uring_buf_ring.self, capacity: 1)
        buffers = m + ringBytes
        self.groupID = groupID
        self.count = count
        self.bufferSize = bufferSize
        mask = Int32(count - 1)
        io_uring_buf_ring_init(entries)
        for id in 0..<count { recycle(UInt16(id)) }
        publishRecycled()
    }

    deinit {
        munmap(mapping, mappingLength)
    }

    /// Start of buffer `id`.
    @inlinable @inline(__always)
    public func buffer(_ id: UInt16) -> UnsafeMutableRawPointer {
        buffers + Int(id) * bufferSize
    }

    /// Buffer `id` as `bufferSize` bytes.
    @inlinable @inline(__always)
    public func bytes(_ id: UInt16) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: buffer(id), count: bufferSize)
    }

    /// Stages buffer `id` to go back to the kernel. Cheap (writes one ring
    /// entry the kernel cannot see yet); call ``publishRecycled()`` once per
    /// batch to make all staged buffers visible. Never recycle a buffer twice.
    ///
    /// The corresponding C function is `io_uring_buf_ring_add`.
    @inlinable @inline(__always)
    public mutating func recycle(_ id: UInt16) {
        precondition(staged < mask + 1, "more buffers recycled than the ring holds (double recycle?)")
        io_uring_buf_ring_add(entries, buffer(id), UInt32(bufferSize), id, mask, staged)
        staged &+= 1
    }

    /// Buffers staged by ``recycle(_:)`` and not yet published.
    @inlinable
    public var stagedCount: Int { Int(staged) }

    /// Publishes every staged buffer with one release store of the ring tail.
    ///
    /// The corresponding C function is `io_uring_buf_ring_advance`.
    @inlinable @inline(__always)
    public mutating func publishRecycled() {
        if staged == 0 { return }
        io_uring_buf_ring_advance(entries, staged)
        staged = 0
    }

    // MARK: Taking buffers without a kernel (unregistered rings only)

    /// The ring's tail: `io_uring_buf_ring` overlays it on the `resv` field
    /// of entry 0 (byte offset 14), written by ``publishRecycled()``.
    @inlinable @inline(__always)
    var publishedTail: UInt16 { UnsafeRawPointer(entries).load(fromByteOffset: 14, as: UInt16.self) }

    /// Published buffers not yet taken.
    @inlinable @inline(__always)
    public var available: Int { Int(publishedTail &- head) }

    /// The ID of the next published buffer, which the caller now owns (as a
    /// CQE's buffer ID would make it), or nil when none is left. Entry `i`
    /// is 16 bytes `{addr, len, bid, resv}`; the ID is at byte 12.
    @inlinable @inline(__always)
    public mutating func take() -> UInt16? {
        guard publishedTail != head else { return nil }
        let i = Int(Int32(head) & mask)
        let id = UnsafeRawPointer(entries).load(fromByteOffset: i * 16 + 12, as: UInt16.self)
        head &+= 1
        return id
    }

    /// Puts back the buffer the last ``take()`` returned (a receive that got
    /// nothing): it is still in its entry, so the head just steps back.
    @inlinable @inline(__always)
    public mutating func untake() { head &-= 1 }

    /// Unregisters the group from `ring` and frees the memory.
    ///
    /// The corresponding C function is `io_uring_unregister_buf_ring`.
    public consuming func unregister(from ring: inout Ring) {
        _ = io_uring_unregister_buf_ring(ring.raw, Int32(groupID))
    }
}
