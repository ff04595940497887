import URing

/// The epoll backend's per-descriptor state: what is armed on each socket
/// and what epoll watches for it, indexed by descriptor number.
///
/// Descriptors are small integers reused by the kernel, so an array is the
/// whole lookup. `reserve` grows it (doubling) the first time a higher
/// descriptor is armed; that happens when sockets are opened, never per packet.
struct DescriptorTable: ~Copyable {
    enum ReadKind: UInt8 { case none, datagram, stream, accept }

    struct Entry {
        var readKind = ReadKind.none
        /// Receive stays armed after each result (multishot) or ends after one.
        var multishot = false
        var group: UInt16 = 0
        var readUD = UserData(rawValue: 0)
        var connecting = false
        var connectUD = UserData(rawValue: 0)
        /// Sends in `WaitingSends` for this descriptor.
        var waitingSends: Int32 = 0
        /// Events epoll currently watches (0: not registered).
        var interest: UInt32 = 0
    }

    private var entries: UnsafeMutablePointer<Entry>
    private(set) var capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: Entry(), count: capacity)
    }

    deinit { entries.deallocate() }

    /// Makes room for descriptor `fd`.
    mutating func reserve(_ fd: Int32) {
        guard Int(fd) >= capacity else { return }
        var bigger = capacity * 2
        while bigger <= Int(fd) { bigger *= 2 }
        let grown = UnsafeMutablePointer<Entry>.allocate(capacity: bigger)
        grown.moveInitialize(from: entries, count: capacity)
        (grown + capacity).initialize(repeating: Entry(), count: bigger - capacity)
        entries.deallocate()
        entries = grown
        capacity = bigger
    }

    /// The entry of `fd`, which must be below `capacity` (reserved).
    subscript(fd: Int32) -> Entry {
        @inline(__always) get { entries[Int(fd)] }
        @inline(__always) nonmutating set { entries[Int(fd)] = newValue }
    }
}
