import STUN
import Testing

@testable import TURN

/// The first address attribute of `type` in a response (not XOR'd).
private func address(_ r: Reply, _ type: STUNAttributeType) -> TransportAddress? {
    r.with { m in
        for a in m.attributes where a.type == type { return AddressCodec.decode(a.value, xor: nil) }
        return nil
    }
}

private func paddingLength(_ r: Reply) -> Int? {
    r.with { m in
        for a in m.attributes where a.type == .padding { return a.value.count }
        return nil
    }
}

/// The RFC 5780 attributes of `bytes`, or the error reading them.
private func parse(_ bytes: [UInt8]) -> Result<NATDiscoveryRequest, STUNError> {
    bytes.withUnsafeBytes { p in
        do throws(STUNError) {
            return .success(try NATDiscoveryRequest(STUNMessage(parsing: p)))
        } catch {
            return .failure(error)
        }
    }
}

/// RFC 5780 on 192.0.2.1 and 192.0.2.2, ports 3478 and 3479.
private func natHarness() -> Harness {
    Harness {
        $0.natDiscovery = NATDiscovery(
            listening: [IPAddress("192.0.2.1")!, IPAddress("192.0.2.2")!], port: 3478, alternatePort: 3479)
    }
}

@Suite("RFC 5780 NAT behaviour discovery")
struct NATDiscoveryTests {
    @Test("the four sockets and their other addresses")
    func pairing() {
        let nat = NATDiscovery(
            listening: [IPAddress("192.0.2.1")!, IPAddress("2001:db8::1")!, IPAddress("192.0.2.2")!],
            port: 3478, alternatePort: 3479)
        #expect(nat.isEnabled)
        #expect(Set(nat.socketAddresses.map(\.description)) == ["192.0.2.1:3478", "192.0.2.1:3479", "192.0.2.2:3478", "192.0.2.2:3479"])
        #expect(nat.otherAddress(of: TransportAddress("192.0.2.1:3478")!) == TransportAddress("192.0.2.2:3479")!)
        #expect(nat.otherAddress(of: TransportAddress("192.0.2.2:3479")!) == TransportAddress("192.0.2.1:3478")!)
        #expect(nat.otherAddress(of: TransportAddress("[2001:db8::1]:3478")!) == nil)  // no IPv6 partner
        #expect(nat.otherAddress(of: TransportAddress("192.0.2.1:5000")!) == nil)
        let local = TransportAddress("192.0.2.1:3478")!
        #expect(nat.source(for: local, changeIP: false, changePort: false) == local)
        #expect(nat.source(for: local, changeIP: true, changePort: false) == TransportAddress("192.0.2.2:3478")!)
        #expect(nat.source(for: local, changeIP: false, changePort: true) == TransportAddress("192.0.2.1:3479")!)
        #expect(nat.source(for: local, changeIP: true, changePort: true) == TransportAddress("192.0.2.2:3479")!)
        #expect(!NATDiscovery(listening: [IPAddress("192.0.2.1")!], port: 3478, alternatePort: 3479).isEnabled)
        #expect(!NATDiscovery().isEnabled)
    }

    @Test("request attributes: CHANGE-REQUEST flags, RESPONSE-PORT, PADDING, and their checks")
    func requestCodec() throws {
        let c = TestClient()
        let bytes = c.request(.binding, sign: false) { (e) throws(STUNError) in
            try e.appendChangeRequest(changeIP: true, changePort: false)
            try e.appendResponsePort(40123)
            try e.appendPadding(length: 100)
        }
        let parsed = try parse(bytes).get()
        #expect(parsed.hasChangeRequest && parsed.changeIP && !parsed.changePort)
        #expect(parsed.responsePort == 40123)
        #expect(parsed.padding == 100)
        let empty = try parse(c.request(.binding, sign: false)).get()
        #expect(empty == NATDiscoveryRequest())
        let short = c.request(.binding, sign: false) { (e) throws(STUNError) in
            try e.append(.changeRequest, bytes: UnsafeRawBufferPointer(start: nil, count: 0))
        }
        #expect(parse(short) == .failure(.invalidLength(.changeRequest)))
        let zeroPort = c.request(.binding, sign: false) { (e) throws(STUNError) in try e.appendResponsePort(0) }
        #expect(parse(zeroPort) == .failure(.invalidValue(.responsePort)))
    }

    @Test("a Binding on an RFC 5780 socket names its origin and the other address")
    func plainRequest() {
        var h = natHarness()
        let c = TestClient("198.51.100.7:40000", server: "192.0.2.1:3478")
        let r = h.send(c.request(.binding, sign: false), from: c)
        #expect(r.isSuccess)
        #expect(r.mapped == c.fiveTuple.client)
        #expect(address(r, .mappedAddress) == c.fiveTuple.client)
        #expect(address(r, .responseOrigin) == TransportAddress("192.0.2.1:3478")!)
        #expect(address(r, .otherAddress) == TransportAddress("192.0.2.2:3479")!)
        #expect(r.outcome.responseSource == nil && r.outcome.responseDestination == nil)
    }

    @Test("CHANGE-REQUEST picks the socket the answer leaves from", arguments: [
        (false, false, "192.0.2.1:3479"), (true, false, "192.0.2.2:3479"), (false, true, "192.0.2.1:3478"),
        (true, true, "192.0.2.2:3478"),
    ])
    func changeRequest(changeIP: Bool, changePort: Bool, expected: String) {
        var h = natHarness()
        let c = TestClient("198.51.100.7:40000", server: "192.0.2.1:3479")
        let r = h.send(
            c.request(.binding, sign: false) { (e) throws(STUNError) in
                try e.appendChangeRequest(changeIP: changeIP, changePort: changePort)
            }, from: c)
        #expect(r.isSuccess)
        #expect(address(r, .responseOrigin) == TransportAddress(expected)!)
        #expect(address(r, .otherAddress) == TransportAddress("192.0.2.2:3478")!)
        let moved = changeIP || changePort
        #expect(r.outcome.responseSource == (moved ? TransportAddress(expected)! : nil))
    }

    @Test("RESPONSE-PORT sends the answer to another port of the client's address")
    func responsePort() {
        var h = natHarness()
        let c = TestClient("198.51.100.7:40000", server: "192.0.2.2:3478")
        let r = h.send(c.request(.binding, sign: false) { (e) throws(STUNError) in try e.appendResponsePort(41000) }, from: c)
        #expect(r.isSuccess)
        #expect(r.outcome.responseDestination == TransportAddress("198.51.100.7:41000")!)
    }

    @Test("PADDING pads the answer to about 1500 bytes; with RESPONSE-PORT it is 400")
    func padding() {
        var h = natHarness()
        let c = TestClient("198.51.100.7:40000", server: "192.0.2.1:3478")
        let r = h.send(c.request(.binding, sign: false) { (e) throws(STUNError) in try e.appendPadding(length: 1400) }, from: c)
        #expect(r.isSuccess)
        #expect((paddingLength(r) ?? 0) > 1000)
        #expect(r.bytes.count <= 1472 && r.bytes.count > 1400)
        let both = h.send(
            c.request(.binding, sign: false) { (e) throws(STUNError) in
                try e.appendPadding(length: 16)
                try e.appendResponsePort(41000)
            }, from: c)
        #expect(both.errorCode == 400)
    }

    @Test("a malformed CHANGE-REQUEST gets 400")
    func malformed() {
        var h = natHarness()
        let c = TestClient("198.51.100.7:40000", server: "192.0.2.1:3478")
        let r = h.send(
            c.request(.binding, sign: false) { (e) throws(STUNError) in try e.append(.changeRequest, uint64: 6) },
            from: c)
        #expect(r.errorCode == 400)
    }

    @Test("without RFC 5780 (one address, another socket, or not UDP): no new attributes; CHANGE-REQUEST gets 420")
    func off() {
        var plain = Harness()
        let c = TestClient()
        let r = plain.send(c.request(.binding, sign: false), from: c)
        #expect(r.isSuccess && !r.has(.otherAddress) && !r.has(.responseOrigin))
        let change = plain.send(
            c.request(.binding, sign: false) { (e) throws(STUNError) in try e.appendChangeRequest(changeIP: true, changePort: false) },
            from: c)
        #expect(change.errorCode == 420)
        #expect(change.unknownAttributes == [0x0003])
        var h = natHarness()
        var tcp = TestClient("198.51.100.7:40000", server: "192.0.2.1:3478")
        tcp.fiveTuple.transport = .tcp
        let overTCP = h.send(tcp.request(.binding, sign: false), from: tcp)
        #expect(overTCP.isSuccess && !overTCP.has(.otherAddress))
    }
}
