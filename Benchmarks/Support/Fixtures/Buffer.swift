/// Heap memory owned by a fixture: allocated once in setup, freed in deinit.
/// Raw pointers, so reading it in a measured loop costs no ARC.
public struct Buffer: ~Copyable {
    public let raw: UnsafeMutableRawBufferPointer
    /// Bytes of meaningful content (a message or frame), at most `raw.count`.
    public var count: Int

    public init(capacity: Int) {
        raw = .allocate(byteCount: capacity, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        count = 0
    }

    public init(_ bytes: [UInt8], capacity: Int = 0) {
        self.init(capacity: Swift.max(capacity, bytes.count))
        bytes.withUnsafeBytes { raw.copyMemory(from: $0) }
        count = bytes.count
    }

    deinit { raw.deallocate() }

    /// The content: `raw[0..<count]`.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: raw[0..<count]) }
}

/// Bytes from hex as RFCs print them (spaces and line breaks ignored). Setup only.
public func hex(_ text: String) -> [UInt8] {
    let digits = text.filter(\.isHexDigit).map { UInt8(String($0), radix: 16)! }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}
