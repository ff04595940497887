import ArgumentParser
import Relay
import STUN
import TURN

/// What the listening group decides that later groups build on.
struct ListeningAddresses {
    /// `--listening-port` (the TLS port may not be the same while TCP listens).
    var port: UInt16
    /// `--listening-ip`s in the order given (default: 127.0.0.1).
    var listenIPs: [IPAddress]
    /// Relay addresses in the order given or taken (several per family allowed).
    var relays: [IPAddress]
    /// Listening, relay and external addresses of this server, which no peer may be.
    var serverAddresses: [IPAddress]
}

extension Settings {
    /// Listening group (`ListeningOptions`): the UDP listeners, the relay
    /// addresses, the external (NAT) address and the relay port range, set on
    /// `engine`.
    static func listening(
        _ o: ListeningOptions, engine: inout EngineConfig, notices: inout [String]
    ) throws(ValidationError) -> ListeningAddresses {
        let port = try Settings.port(o.listeningPort, flag: "--listening-port")
        let listenIPs = try Settings.listeningIPs(o.listeningIPs)
        engine.listen = listenIPs.map { TransportAddress(ip: $0, port: port) }

        let relays = try Settings.relayIPs(o.relayIPs, listenIPs: listenIPs, notices: &notices)
        engine.relayIPsV4 = relays.filter { $0.family == .v4 }
        engine.relayIPsV6 = relays.filter { $0.family == .v6 }
        if o.externalIP != nil && engine.relayIPsV4.count > 1 {
            throw ValidationError(
                "--external-ip maps one IPv4 relay address, and --relay-ip gives \(engine.relayIPsV4.count); give one IPv4 --relay-ip with it.")
        }

        var serverAddresses = listenIPs.filter { !$0.isUnspecified } + relays
        if let external = try Settings.externalIPv4(o.externalIP, relayIPv4: engine.relayIPv4) {
            engine.externalIPv4 = external
            serverAddresses.append(external)
        }

        // Relay ports.
        let minPort = try Settings.port(o.minPort, flag: "--min-port")
        let maxPort = try Settings.port(o.maxPort, flag: "--max-port")
        if minPort > maxPort {
            throw ValidationError("--min-port \(minPort) is above --max-port \(maxPort).")
        }
        engine.minPort = minPort
        engine.maxPort = maxPort

        return ListeningAddresses(port: port, listenIPs: listenIPs, relays: relays, serverAddresses: serverAddresses)
    }

    /// `--listening-ip`: distinct addresses, 127.0.0.1 when none is given.
    static func listeningIPs(_ texts: [String]) throws(ValidationError) -> [IPAddress] {
        var listenIPs: [IPAddress] = []
        for text in texts.isEmpty ? ["127.0.0.1"] : texts {
            guard let ip = IPAddress(text) else {
                throw ValidationError("--listening-ip '\(text)' is not an IPv4 or IPv6 address.")
            }
            if listenIPs.contains(ip) { throw ValidationError("--listening-ip \(ip) is given twice.") }
            listenIPs.append(ip)
        }
        return listenIPs
    }

    /// `--relay-ip`: one unicast address per family; without it, the specific
    /// listening addresses (the first of each family).
    static func relayIPs(
        _ texts: [String], listenIPs: [IPAddress], notices: inout [String]
    ) throws(ValidationError) -> [IPAddress] {
        var relays: [IPAddress] = []
        for text in texts {
            guard let ip = IPAddress(text) else {
                throw ValidationError("--relay-ip '\(text)' is not an IPv4 or IPv6 address.")
            }
            if ip.isUnspecified || ip.isMulticast {
                throw ValidationError("--relay-ip \(ip) cannot be a relay address; give the host's own unicast address.")
            }
            if relays.contains(ip) { throw ValidationError("--relay-ip \(ip) is given twice.") }
            relays.append(ip)
        }
        if relays.isEmpty {
            for ip in listenIPs where !ip.isUnspecified && !relays.contains(where: { $0.family == ip.family }) {
                relays.append(ip)
            }
            if relays.isEmpty {
                throw ValidationError(
                    "--listening-ip \(listenIPs[0]) listens on every address, so the relay address cannot be taken from it; give --relay-ip with this host's public address.")
            }
            if listenIPs.count > relays.count {
                notices.append("relay address taken from the listening addresses: \(relays.map(\.description).joined(separator: ", ")) (set --relay-ip to choose)")
            }
        }
        return relays
    }

    /// `--external-ip`, coturn's public[/private]: the IPv4 address advertised
    /// as the relayed address (nil: none given).
    static func externalIPv4(_ text: String?, relayIPv4: IPAddress?) throws(ValidationError) -> IPAddress? {
        guard let text else { return nil }
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let external = IPAddress(parts[0]) else {
            throw ValidationError("--external-ip '\(text)': expected public or public/private IPv4 addresses.")
        }
        guard external.family == .v4 else {
            throw ValidationError("--external-ip \(external): only an IPv4 external address is supported.")
        }
        guard let relay4 = relayIPv4 else {
            throw ValidationError("--external-ip needs an IPv4 relay address (--relay-ip).")
        }
        if parts.count == 2 {
            guard let local = IPAddress(parts[1]) else {
                throw ValidationError("--external-ip '\(text)': '\(parts[1])' is not an IP address.")
            }
            if local != relay4 {
                throw ValidationError(
                    "--external-ip \(text): the private address must be the IPv4 relay address (\(relay4)).")
            }
        }
        return external
    }
}

extension Settings {
    /// RFC 5780 (NAT behaviour discovery): with two listening addresses of a
    /// family and UDP listening, unless `--no-rfc5780`, each of the pair also
    /// listens on `--alt-listening-port` (default: the listening port + 1),
    /// and Binding there answers CHANGE-REQUEST, RESPONSE-PORT and PADDING
    /// with RESPONSE-ORIGIN and OTHER-ADDRESS.
    static func natDiscovery(
        _ l: ListeningOptions, addresses: ListeningAddresses, engine: inout EngineConfig,
        turn: inout TURNConfiguration, notices: inout [String]
    ) throws(ValidationError) {
        guard !l.noRFC5780, !engine.listen.isEmpty else { return }
        let wanted = l.altListeningPort ?? Int(addresses.port) + 1
        let alternate = try Settings.port(wanted, flag: "--alt-listening-port")
        guard alternate != addresses.port else {
            throw ValidationError("--alt-listening-port \(alternate) is the listening port; choose another or add --no-rfc5780.")
        }
        let nat = NATDiscovery(listening: addresses.listenIPs, port: addresses.port, alternatePort: alternate)
        guard nat.isEnabled else {
            if l.altListeningPort != nil {
                notices.append("--alt-listening-port: RFC 5780 needs two listening addresses of one family; no alternate port is bound")
            }
            return
        }
        turn.natDiscovery = nat
        for a in nat.socketAddresses where !engine.listen.contains(a) { engine.listen.append(a) }
    }
}
