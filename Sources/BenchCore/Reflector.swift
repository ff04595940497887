import CURing
import Foundation
import Synchronization
import URing

#if canImport(Glibc)
    import Glibc
#endif

/// The peer: a UDP echo on its own thread, a recvfrom/sendto loop (a receive timeout lets it see stop()) that
/// sends every datagram back to where it came from (the relayed address).
public final class Reflector: @unchecked Sendable {
    public let address: SocketAddress
    let socket: UDPSocket
    let stopping = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    let echoedCount = Atomic<UInt64>(0)
    private var thread: Thread?
    static let batch = 64

    public init(bind: SocketAddress) throws {
        socket = try UDPSocket.bound(to: bind)
        try? socket.setReceiveBufferSize(8 << 20)
        try? socket.setSendBufferSize(8 << 20)
        address = try socket.localAddress()
    }

    public var echoed: UInt64 { echoedCount.load(ordering: .relaxed) }

    public func start(cpu: Int? = nil) {
        let t = Thread { [self] in
            _ = curing_name_current_thread("bench-peer")
            if let cpu { _ = curing_pin_current_thread(Int32(cpu)) }
            loop()
            finished.store(true, ordering: .releasing)
        }
        thread = t
        t.start()
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        let deadline = Date().addingTimeInterval(2)
        while thread != nil, !finished.load(ordering: .acquiring), Date() < deadline { usleep(1000) }
        socket.close()
    }

    private func loop() {
        try? socket.setReceiveTimeout(.milliseconds(50))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
        defer { buffer.deallocate() }
        var count: UInt64 = 0
        while !stopping.load(ordering: .relaxed) {
            guard let got = try? socket.receive(into: buffer) else { continue }
            let (n, from) = got
            if (try? socket.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), to: from)) != nil {
                count += 1
                if count & 63 == 0 { echoedCount.store(count, ordering: .relaxed) }
            }
        }
        echoedCount.store(count, ordering: .relaxed)
    }
}
