import URing

/// The worker's receive buffers: two provided-buffer groups and a reference
/// count per buffer.
///
/// Group 0 holds `--buffers` small buffers (one datagram each). Group 1
/// holds large buffers for sockets with UDP_GRO, where one receive is a
/// train of datagrams (up to 64 KiB). A buffer is named by a *handle*: its
/// ID, with bit 15 set for group 1.
///
/// Reference counting (plain integers, one owner thread): a receive CQE
/// hands the worker a buffer with count 1 (`took`); every send that points
/// into it adds one (`retain`); the dispatcher drops its own reference when
/// it is done with the datagram or train (`release`), and each completed
/// send drops one. At zero the buffer goes back to its ring. This is what
/// lets one GRO train feed several sends, and a single datagram be dropped
/// or forwarded without special cases.
struct ReceiveBuffers: ~Copyable {
    var small: BufferRing
    var large: BufferRing
    private let refs: UnsafeMutablePointer<UInt16>
    private(set) var outSmall = 0
    private(set) var outLarge = 0

    static let smallGroup: UInt16 = 0
    static let largeGroup: UInt16 = 1
    static let largeFlag: UInt16 = 0x8000

    /// `largeCount` may be small (2) when no socket uses GRO.
    init(ring: inout Ring, smallCount: Int, smallSize: Int, largeCount: Int, largeSize: Int) throws(URingError) {
        let s = try BufferRing(ring: &ring, groupID: Self.smallGroup, count: smallCount, bufferSize: smallSize)
        let l = try BufferRing(ring: &ring, groupID: Self.largeGroup, count: largeCount, bufferSize: largeSize)
        small = s
        large = l
        refs = .allocate(capacity: smallCount + largeCount)
        refs.initialize(repeating: 0, count: smallCount + largeCount)
    }

    /// The epoll backend's buffers: the same two rings, not registered with
    /// any io_uring; `EpollReactor` takes buffers from them as the kernel would.
    init(unregisteredSmallCount smallCount: Int, smallSize: Int, largeCount: Int, largeSize: Int) throws(URingError) {
        let s = try BufferRing(unregisteredGroupID: Self.smallGroup, count: smallCount, bufferSize: smallSize)
        let l = try BufferRing(unregisteredGroupID: Self.largeGroup, count: largeCount, bufferSize: largeSize)
        small = s
        large = l
        refs = .allocate(capacity: smallCount + largeCount)
        refs.initialize(repeating: 0, count: smallCount + largeCount)
    }

    deinit { refs.deallocate() }

    @inline(__always)
    static func handle(id: UInt16, large: Bool) -> UInt16 { large ? id | largeFlag : id }

    @inline(__always)
    private func index(_ h: UInt16) -> Int { h & Self.largeFlag == 0 ? Int(h) : small.count + Int(h & ~Self.largeFlag) }

    @inline(__always)
    func base(_ h: UInt16) -> UnsafeMutableRawPointer {
        h & Self.largeFlag == 0 ? small.buffer(h) : large.buffer(h & ~Self.largeFlag)
    }

    @inline(__always)
    func size(_ h: UInt16) -> Int { h & Self.largeFlag == 0 ? small.bufferSize : large.bufferSize }

    /// A receive completion delivered buffer `h` to the worker.
    @inline(__always)
    mutating func took(_ h: UInt16) {
        refs[index(h)] = 1
        if h & Self.largeFlag == 0 { outSmall += 1 } else { outLarge += 1 }
    }

    /// A send now points into buffer `h`.
    @inline(__always)
    mutating func retain(_ h: UInt16) { refs[index(h)] &+= 1 }

    /// Drops one reference; the last one gives the buffer back to its ring.
    @inline(__always)
    mutating func release(_ h: UInt16) {
        let i = index(h)
        refs[i] &-= 1
        guard refs[i] == 0 else { return }
        if h & Self.largeFlag == 0 {
            small.recycle(h)
            outSmall -= 1
        } else {
            large.recycle(h & ~Self.largeFlag)
            outLarge -= 1
        }
    }

    /// Makes every buffer given back since the last call visible to the kernel.
    @inline(__always)
    mutating func publish() {
        small.publishRecycled()
        large.publishRecycled()
    }

    /// Whether a receive drawing from that group could get a buffer now.
    func hasFree(large isLarge: Bool) -> Bool { isLarge ? outLarge < large.count : outSmall < small.count }
}
