import Glibc
import Relay
import STUN
import Testing

/// `#expect` cannot take a call on a ~Copyable value; evaluate it first.
func expectTrue(_ value: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(value, sourceLocation: sourceLocation)
}

/// The send batcher's grouping rules, without a ring: what `flush` hands over.
@Suite("Send batcher: GSO grouping")
struct SendBatcherTests {
    struct Flushed: Equatable {
        var fd: Int32
        var iovecs: Int
        var segment: Int?  // UDP_SEGMENT value, nil without the cmsg
        var bytes: Int
    }

    static let peerA = TransportAddress("192.0.2.1:5000")!
    static let peerB = TransportAddress("192.0.2.2:5000")!

    func flush(_ b: inout SendBatcher) -> [Flushed] {
        var out: [Flushed] = []
        _ = b.flush { _, fd, msg in
            let m = msg.pointee
            var segment: Int?
            if m.msg_controllen > 0, let c = m.msg_control {
                segment = Int(c.load(fromByteOffset: 16, as: UInt16.self))
            }
            let iov = UnsafeBufferPointer(start: m.msg_iov, count: Int(m.msg_iovlen))
            out.append(Flushed(fd: fd, iovecs: iov.count, segment: segment, bytes: iov.reduce(0) { $0 + $1.iov_len }))
            return true
        }
        return out
    }

    @Test("equal-size datagrams to one destination become one GSO send; the last may be shorter")
    func grouping() {
        var b = SendBatcher(capacity: 16, gso: true)
        let data = [UInt8](repeating: 1, count: 2000)
        data.withUnsafeBytes { raw in
            for i in 0..<5 { expectTrue(b.enqueue(fd: 7, to: Self.peerA, bytes: raw.baseAddress!, count: 120, buffer: UInt16(i))) }
            expectTrue(b.enqueue(fd: 7, to: Self.peerA, bytes: raw.baseAddress!, count: 60, buffer: 5))
            // After a shorter one the group is closed: this opens a new one.
            expectTrue(b.enqueue(fd: 7, to: Self.peerA, bytes: raw.baseAddress!, count: 120, buffer: 6))
            // Another destination, another socket: their own sends.
            expectTrue(b.enqueue(fd: 7, to: Self.peerB, bytes: raw.baseAddress!, count: 120, buffer: 7))
            expectTrue(b.enqueue(fd: 8, to: Self.peerA, bytes: raw.baseAddress!, count: 120, buffer: 8))
            // Larger than a 1500-byte MTU segment: alone, without UDP_SEGMENT.
            expectTrue(b.enqueue(fd: 7, to: Self.peerA, bytes: raw.baseAddress!, count: 1600, buffer: 9))
        }
        let sent = flush(&b)
        #expect(sent == [
            Flushed(fd: 7, iovecs: 6, segment: 120, bytes: 660),
            Flushed(fd: 7, iovecs: 1, segment: nil, bytes: 120),
            Flushed(fd: 7, iovecs: 1, segment: nil, bytes: 120),
            Flushed(fd: 8, iovecs: 1, segment: nil, bytes: 120),
            Flushed(fd: 7, iovecs: 1, segment: nil, bytes: 1600),
        ])
        var recycled: [UInt16] = []
        let first = b.complete(0) { recycled.append($0) }
        #expect(first.datagrams == 6 && first.usedGSO)
        #expect(recycled == [0, 1, 2, 3, 4, 5])
    }

    @Test("a group holds at most 64 datagrams; without GSO every datagram is its own send")
    func limits() {
        var gso = SendBatcher(capacity: 8, gso: true)
        var plain = SendBatcher(capacity: 128, gso: false)
        let data = [UInt8](repeating: 0, count: 100)
        data.withUnsafeBytes { raw in
            for i in 0..<70 {
                let ok6048 = gso.enqueue(fd: 3, to: Self.peerA, bytes: raw.baseAddress!, count: 100, buffer: UInt16(i))

                #expect(ok6048)
                let ok48377 = plain.enqueue(fd: 3, to: Self.peerA, bytes: raw.baseAddress!, count: 100, buffer: UInt16(i))

                #expect(ok48377)
            }
        }
        let g = flush(&gso)
        #expect(g.map(\.iovecs) == [64, 6])
        let p = flush(&plain)
        #expect(p.count == 70 && p.allSatisfy { $0.segment == nil && $0.iovecs == 1 })
    }

    @Test("prefix and padding iovecs: the segment size counts all three")
    func prefixAndPadding() {
        var b = SendBatcher(capacity: 4, gso: true)
        let data = [UInt8](repeating: 0, count: 64)
        let header: [UInt8] = [0x40, 0x00, 0x00, 0x3d]
        data.withUnsafeBytes { raw in
            header.withUnsafeBytes { h in
                for i in 0..<3 {
                    expectTrue(b.enqueue(
                        fd: 4, to: Self.peerA, prefix: h.baseAddress, prefixLength: 4, bytes: raw.baseAddress!,
                        count: 61, padding: 3, buffer: UInt16(i)))
                }
            }
        }
        let f = flush(&b)
        #expect(f == [Flushed(fd: 4, iovecs: 9, segment: 68, bytes: 204)])
    }

    @Test("when every operation is in flight, enqueue refuses (the caller drops)")
    func exhaustion() {
        var b = SendBatcher(capacity: 2, gso: false)
        let data = [UInt8](repeating: 0, count: 10)
        data.withUnsafeBytes { raw in
            expectTrue(b.enqueue(fd: 3, to: Self.peerA, bytes: raw.baseAddress!, count: 10, buffer: 0))
            expectTrue(b.enqueue(fd: 3, to: Self.peerA, bytes: raw.baseAddress!, count: 10, buffer: 1))
            expectTrue(!b.enqueue(fd: 3, to: Self.peerA, bytes: raw.baseAddress!, count: 10, buffer: 2))
        }
        let free = b.freeOperations
        #expect(free == 0)
    }

    @Test("a copied datagram bigger than the scratch goes whole from a large area, given back when its send completes")
    func largeCopies() {
        var b = SendBatcher(capacity: 8, gso: true, largeAreas: 2)
        let big = (0..<SendBatcher.largeSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var seen: [[UInt8]] = []
        big.withUnsafeBytes { raw in
            // Fits the scratch: no large area used.
            expectTrue(b.enqueueCopy(fd: 5, to: Self.peerA, UnsafeRawBufferPointer(rebasing: raw[0..<100])))
            expectTrue(b.enqueueCopy(fd: 5, to: Self.peerA, UnsafeRawBufferPointer(rebasing: raw[0..<12_000])))
            expectTrue(b.enqueueCopy(fd: 5, to: Self.peerA, raw))
            // Both large areas held: a third large copy is refused, a small one is not.
            expectTrue(!b.enqueueCopy(fd: 5, to: Self.peerA, UnsafeRawBufferPointer(rebasing: raw[0..<4000])))
            expectTrue(b.enqueueCopy(fd: 5, to: Self.peerA, UnsafeRawBufferPointer(rebasing: raw[0..<64])))
        }
        let free = b.freeLargeAreas
        #expect(free == 0)
        _ = b.flush { _, _, msg in
            let iov = UnsafeBufferPointer(start: msg.pointee.msg_iov, count: Int(msg.pointee.msg_iovlen))
            seen.append(iov.flatMap { Array(UnsafeRawBufferPointer(start: $0.iov_base, count: $0.iov_len)) })
            return true
        }
        #expect(seen.map(\.count) == [100, 12_000, SendBatcher.largeSize, 64])
        #expect(seen[1] == Array(big[0..<12_000]))
        #expect(seen[2] == big)
        _ = b.complete(1) { _ in }
        let afterOne = b.freeLargeAreas
        #expect(afterOne == 1)
        big.withUnsafeBytes { raw in
            expectTrue(b.enqueueCopy(fd: 5, to: Self.peerA, UnsafeRawBufferPointer(rebasing: raw[0..<4000])))
            // Bigger than a large area: refused.
            let tooBig = [UInt8](repeating: 0, count: SendBatcher.largeSize + 1)
            tooBig.withUnsafeBytes { expectTrue(!b.enqueueCopy(fd: 5, to: Self.peerA, $0)) }
        }
    }

    @Test("without large areas a copy bigger than the scratch is refused")
    func noLargeAreas() {
        var b = SendBatcher(capacity: 4, gso: false)
        let data = [UInt8](repeating: 9, count: SendBatcher.scratchSize + 1)
        data.withUnsafeBytes { raw in
            expectTrue(!b.enqueueCopy(fd: 5, to: Self.peerA, raw))
            expectTrue(b.enqueueCopy(fd: 5, to: Self.peerA, UnsafeRawBufferPointer(rebasing: raw[0..<SendBatcher.scratchSize])))
        }
    }
}
