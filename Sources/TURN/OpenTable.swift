import STUN

/// A key the open-addressing tables can hash with a per-table seed.
///
/// Why not `Hashable`: `Hasher` is SipHash, correct but several times the
/// cost of this keyed multiply-mix, and these tables sit on the per-packet
/// path. The seed is random per table, so a remote party that picks its
/// addresses and channel numbers cannot aim for one probe chain without
/// seeing the table.
protocol TableKey: Equatable {
    func tableHash(seed: UInt64) -> UInt64
}

/// One round of a "multiply and fold" mixer (wyhash's mum).
@inline(__always)
func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let r = (a ^ 0xA076_1D64_78BD_642F).multipliedFullWidth(by: b ^ 0xE703_7ED1_A0B4_28DB)
    return r.high ^ r.low
}

extension IPAddress {
    @inline(__always)
    func tableHash(seed: UInt64) -> UInt64 {
        mix(mix(seed ^ UInt64(family.rawValue), high), low)
    }
}

extension TransportAddress {
    @inline(__always)
    func tableHash(seed: UInt64) -> UInt64 {
        ip.tableHash(seed: seed ^ UInt64(port) << 8)
    }
}

/// A fixed-capacity hash map with linear probing and backward-shift deletion.
///
/// Invariants (the unsafe part of the module lives here and in the tables
/// built on it):
/// - `buckets` and `occupied` are allocated once in `init` for `mask + 1`
///   entries (a power of two, at least twice `maxCount`, so probe chains stay
///   short and there is always an empty bucket to end a probe) and freed in
///   `deinit`; nothing reallocates afterwards.
/// - A bucket's key and value are meaningful iff its `occupied` flag is set.
/// - `Key` and `Value` are trivial types (checked in `init`), so buckets are
///   moved with plain stores: no retain, release or deinit ever runs here.
struct OpenTable<Key: TableKey, Value>: ~Copyable {
    struct Bucket {
        var key: Key
        var value: Value
    }

    let buckets: UnsafeMutablePointer<Bucket>
    let occupied: UnsafeMutablePointer<Bool>
    let mask: Int
    let seed: UInt64
    let maxCount: Int
    private(set) var count = 0

    init(maxCount: Int, seed: UInt64) {
        precondition(_isPOD(Key.self) && _isPOD(Value.self), "table keys and values must be trivial")
        var cap = 8
        while cap < maxCount * 2 { cap <<= 1 }
        buckets = .allocate(capacity: cap)
        occupied = .allocate(capacity: cap)
        occupied.initialize(repeating: false, count: cap)
        mask = cap - 1
        self.seed = seed
        self.maxCount = maxCount
    }

    deinit {
        buckets.deallocate()
        occupied.deallocate()
    }

    @inline(__always)
    func home(_ key: Key) -> Int { Int(truncatingIfNeeded: key.tableHash(seed: seed)) & mask }

    @inline(__always)
    func index(of key: Key) -> Int? {
        var i = home(key)
        while occupied[i] {
            if buckets[i].key == key { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    @inline(__always)
    func get(_ key: Key) -> Value? {
        guard let i = index(of: key) else { return nil }
        return buckets[i].value
    }

    /// Inserts or replaces. Returns false only when the key is new and the
    /// table already holds `maxCount` entries.
    @discardableResult
    mutating func set(_ key: Key, _ value: Value) -> Bool {
        var i = home(key)
        while occupied[i] {
            if buckets[i].key == key {
                buckets[i].value = value
                return true
            }
            i = (i + 1) & mask
        }
        guard count < maxCount else { return false }
        (buckets + i).initialize(to: Bucket(key: key, value: value))
        occupied[i] = true
        count += 1
        return true
    }

    @discardableResult
    mutating func remove(_ key: Key) -> Value? {
        guard var hole = index(of: key) else { return nil }
        let removed = buckets[hole].value
        // Backward shift: pull later members of the probe run into the hole
        // unless that would move them in front of their home bucket.
        var j = (hole + 1) & mask
        while occupied[j] {
            let h = home(buckets[j].key)
            if (j - h) & mask >= (j - hole) & mask {
                buckets[hole] = buckets[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        occupied[hole] = false
        count -= 1
        return removed
    }
}
