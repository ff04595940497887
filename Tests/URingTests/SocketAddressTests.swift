import Testing
import URing

struct SocketAddressTests {
    @Test(arguments: [("127.0.0.1", UInt16(3479)), ("192.0.2.200", 1), ("::1", 65535), ("2001:db8::42:1", 5000)])
    func sockaddrRoundTrip(text: String, port: UInt16) throws {
        let a = try #require(SocketAddress(text, port: port))
        let b = try #require(SocketAddress(storage: a.storage))
        #expect(a == b)
        #expect(b.port == port)
        let c = try #require(a.withSockaddr { SocketAddress(sockaddr: UnsafeRawPointer($0), length: Int($1)) })
        #expect(c == a)
        #expect(a.description.hasSuffix(":\(port)"))
    }

    @Test func fieldsMatchIPAddressLayout() throws {
        let v4 = try #require(SocketAddress("127.0.0.1", port: 1))
        #expect(v4.family == .v4 && v4.high == 0 && v4.low == 0x7F00_0001)
        #expect(v4 == .loopbackV4(port: 1))
        let v6 = try #require(SocketAddress("::1", port: 2))
        #expect(v6.family == .v6 && v6.high == 0 && v6.low == 1)
        #expect(v6.description == "[::1]:2")
        #expect(v4.description == "127.0.0.1:1")
        #expect(SocketAddress("not an address", port: 1) == nil)
    }
}
