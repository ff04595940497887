import ArgumentParser
import STUN
import TURN

extension Settings {
    /// Peers group (`PeerOptions`): the allow and deny blocks and loopback
    /// peers. `serverAddresses` (this server's own) stay denied as peers but
    /// on the relay ports (another allocation's relayed address).
    static func peerPolicy(
        _ o: PeerOptions, serverAddresses: [IPAddress], relayPorts: ClosedRange<UInt16>, warnings: inout [String]
    ) throws(ValidationError) -> PeerPolicy {
        var allowed: [CIDR] = []
        var denied: [CIDR] = []
        for text in o.allowedPeerIPs {
            guard let blocks = parseAddressBlocks(text) else { throw Settings.badBlock("--allowed-peer-ip", text) }
            allowed += blocks
        }
        for text in o.deniedPeerIPs {
            guard let blocks = parseAddressBlocks(text) else { throw Settings.badBlock("--denied-peer-ip", text) }
            denied += blocks
        }
        if o.allowLoopbackPeers {
            warnings.append(
                "--allow-loopback-peers: clients may relay to this host's loopback services (127.0.0.0/8, ::1). FOR TESTING ONLY; never use it on a reachable server.")
        }
        return PeerPolicy(
            allowLoopbackPeers: o.allowLoopbackPeers, allowed: allowed, denied: denied,
            serverAddresses: serverAddresses, relayPorts: relayPorts)
    }

    static func badBlock(_ flag: String, _ text: String) -> ValidationError {
        ValidationError(
            "\(flag) '\(text)': expected an address (10.1.2.3), a CIDR block (10.0.0.0/8, fc00::/7) or a range (10.0.0.0-10.255.255.255).")
    }
}
