import STUN
import Testing

@testable import TURN

@Suite("Peer address policy (RFC 8656 §21 security, coturn CVE-2020-26262)")
struct PeerPolicyTests {
    let policy = PeerPolicy(serverAddresses: [IPAddress("203.0.113.10")!, IPAddress("2001:db8::10")!])

    static let deniedByDefault: [(String, PeerDenial)] = [
        ("127.0.0.1", .loopback), ("127.255.0.9", .loopback), ("::1", .loopback),
        ("0.0.0.0", .unspecified), ("0.1.2.3", .unspecified), ("::", .unspecified),
        ("169.254.1.1", .linkLocal), ("fe80::1", .linkLocal), ("febf::1", .linkLocal),
        ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("ff02::1", .multicast), ("ff0e::1", .multicast),
        ("255.255.255.255", .broadcast), ("240.0.0.1", .reserved),
        ("203.0.113.10", .serverAddress), ("2001:db8::10", .serverAddress),
        ("10.1.2.3", .privateRange), ("172.16.0.1", .privateRange), ("172.31.255.255", .privateRange),
        ("192.168.1.1", .privateRange), ("100.64.0.1", .privateRange), ("fc00::1", .privateRange),
        ("fd12:3456::1", .privateRange),
        // IPv4 spelled inside IPv6
        ("::ffff:127.0.0.1", .loopback), ("::127.0.0.1", .loopback), ("::ffff:0:127.0.0.1", .loopback),
        ("64:ff9b::7f00:1", .loopback), ("64:ff9b::a9fe:101", .linkLocal), ("::ffff:0.0.0.0", .unspecified),
        ("::ffff:10.0.0.1", .privateRange), ("::ffff:192.168.0.1", .privateRange), ("64:ff9b::c0a8:1", .privateRange),
        ("::ffff:224.0.0.1", .multicast), ("::ffff:255.255.255.255", .broadcast),
        ("::ffff:203.0.113.10", .serverAddress),
        ("2002:7f00:1::1", .loopback), ("2002:a00:1::", .privateRange),  // 6to4
        ("64:ff9b:1::7f00:1", .loopback),  // local-use NAT64 /96
        ("64:ff9b:1:a00:0:100::", .privateRange), ("64:ff9b:1:0:7f:0:100:0", .loopback),  // /48, /64 layouts
        ("64:ff9b:1:7f00:0:100::", .loopback),  // local-use NAT64 /48 layout
        ("2001:0:7f00:1::1", .loopback),  // Teredo server field
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", .loopback),  // Teredo client 127.0.0.1 (inverted)
    ]

    @Test("denied by default", arguments: deniedByDefault)
    func denied(_ text: String, _ reason: PeerDenial) {
        let ip = IPAddress(text)!
        #expect(policy.denial(for: ip) == reason, "\(text)")
        #expect(!policy.isAllowed(ip))
    }

    @Test("public addresses allowed", arguments: ["8.8.8.8", "198.51.100.7", "2001:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "64:ff9b:1::808:808", "172.32.0.1", "100.128.0.1"])
    func allowed(_ text: String) {
        #expect(policy.isAllowed(IPAddress(text)!), "\(text)")
    }

    @Test func allowListOpensPrivateRangesIncludingMappedSpellings() {
        var p = policy
        p.allowed = [CIDR("10.0.0.0/8")!, CIDR("192.168.1.0/24")!]
        #expect(p.isAllowed(IPAddress("10.9.9.9")!))
        #expect(p.isAllowed(IPAddress("::ffff:10.9.9.9")!))
        #expect(p.isAllowed(IPAddress("192.168.1.77")!))
        #expect(p.denial(for: IPAddress("192.168.2.1")!) == .privateRange)
    }

    @Test func allowListCannotOpenHardDenials() {
        var p = policy
        p.allowed = [CIDR("127.0.0.0/8")!, CIDR("0.0.0.0/0")!, CIDR("::/0")!]
        #expect(p.denial(for: IPAddress("127.0.0.1")!) == .loopback)
        #expect(p.denial(for: IPAddress("::ffff:127.0.0.1")!) == .loopback)
        #expect(p.denial(for: IPAddress("203.0.113.10")!) == .serverAddress)
        #expect(p.isAllowed(IPAddress("10.0.0.1")!))
    }

    @Test func denyListAddsDenialsAndAllowListWins() {
        var p = policy
        p.denied = [CIDR("198.51.100.0/24")!, CIDR("2001:db8:bad::/48")!]
        #expect(p.denial(for: IPAddress("198.51.100.9")!) == .deniedList)
        #expect(p.denial(for: IPAddress("::ffff:198.51.100.9")!) == .deniedList)
        #expect(p.denial(for: IPAddress("2001:db8:bad::1")!) == .deniedList)
        p.allowed = [CIDR("198.51.100.9")!]
        #expect(p.isAllowed(IPAddress("198.51.100.9")!))
        #expect(!p.isAllowed(IPAddress("198.51.100.10")!))
    }

    @Test func privateDefaultCanBeTurnedOff() {
        var p = policy
        p.denyPrivateByDefault = false
        #expect(p.isAllowed(IPAddress("10.0.0.1")!))
        #expect(p.isAllowed(IPAddress("fd00::1")!))
        #expect(!p.isAllowed(IPAddress("127.0.0.1")!))
    }

    @Test func loopbackSwitchForTests() {
        let p = PeerPolicy(allowLoopbackPeers: true, serverAddresses: [IPAddress("127.0.0.1")!, IPAddress("203.0.113.10")!])
        #expect(p.isAllowed(IPAddress("127.0.0.1")!))
        #expect(p.isAllowed(IPAddress("::1")!))
        #expect(p.isAllowed(IPAddress("::ffff:127.0.0.1")!))
        #expect(p.denial(for: IPAddress("203.0.113.10")!) == .serverAddress)
        #expect(p.denial(for: IPAddress("0.0.0.0")!) == .unspecified)
    }

    @Test func ownAddressesOnRelayPortsOnly() {
        let p = PeerPolicy(
            serverAddresses: [IPAddress("203.0.113.10")!, IPAddress("2001:db8::10")!, IPAddress("10.0.0.5")!],
            relayPorts: 49152...65535)
        // Address level (CreatePermission): the server's public addresses pass;
        // a private one still follows the private-range rule.
        #expect(p.denial(for: IPAddress("203.0.113.10")!) == nil)
        #expect(p.denial(for: IPAddress("2001:db8::10")!) == nil)
        #expect(p.denial(for: IPAddress("10.0.0.5")!) == .privateRange)
        for (peer, expected) in [
            ("203.0.113.10:49152", nil), ("203.0.113.10:65535", nil), ("[2001:db8::10]:50000", nil),
            ("203.0.113.10:3478", PeerDenial.serverAddress), ("203.0.113.10:49151", .serverAddress),
            ("[2001:db8::10]:443", .serverAddress), ("[::ffff:203.0.113.10]:22", .serverAddress),
            ("198.51.100.1:22", nil), ("10.0.0.5:50000", .privateRange),
        ] as [(String, PeerDenial?)] {
            #expect(p.denial(forPeer: TransportAddress(peer)!) == expected, "\(peer)")
        }
        // Loopback server addresses under --allow-loopback-peers keep every port (tests on one host).
        let l = PeerPolicy(allowLoopbackPeers: true, serverAddresses: [IPAddress("127.0.0.1")!], relayPorts: 49152...65535)
        #expect(l.denial(forPeer: TransportAddress("127.0.0.1:3478")!) == nil)
    }

    @Test func cidrParsing() {
        #expect(CIDR("10.0.0.0/8")!.contains(IPAddress("10.255.1.1")!))
        #expect(!CIDR("10.0.0.0/8")!.contains(IPAddress("11.0.0.1")!))
        #expect(!CIDR("10.0.0.0/8")!.contains(IPAddress("::ffff:10.0.0.1")!))
        #expect(CIDR("10.1.2.3/8")!.description == "10.0.0.0/8")
        #expect(CIDR("fe80::/10")!.contains(IPAddress("fe80::1234")!))
        #expect(CIDR("2001:db8::/127")!.contains(IPAddress("2001:db8::1")!))
        #expect(!CIDR("2001:db8::/128")!.contains(IPAddress("2001:db8::1")!))
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("1.2.3.4")!))
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(CIDR("nonsense") == nil)
    }
}
