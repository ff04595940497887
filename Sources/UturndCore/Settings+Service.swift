import ArgumentParser
import Relay
import TURN

extension Settings {
    /// Service group (`ServiceOptions`): STUN-only or TURN-only service,
    /// authenticated Binding, the UDP listener and UDP relaying, the SOFTWARE
    /// attribute and the test-only permission and channel lifetimes. Runs
    /// after the TCP/TLS group, since `--no-udp` needs another listener.
    static func service(
        _ s: ServiceOptions, engine: inout EngineConfig, turn: inout TURNConfiguration,
        warnings: inout [String], notices: inout [String]
    ) throws(ValidationError) {
        if s.stunOnly && s.noSTUN {
            throw ValidationError("--stun-only and --no-stun together leave nothing to serve; choose one.")
        }
        if s.secureSTUN && s.noSTUN {
            notices.append("--secure-stun has no effect with --no-stun (Binding is not answered)")
        }
        if s.noUDP {
            if engine.tcpListen.isEmpty && engine.tlsListen.isEmpty {
                throw ValidationError(
                    "--no-udp leaves no listener: TCP is off (--no-tcp) and TLS needs --cert and --pkey (without --no-tls).")
            }
            engine.listen = []
        }
        turn.stunOnly = s.stunOnly
        turn.answersBinding = !s.noSTUN
        turn.authenticatesBinding = s.secureSTUN
        turn.udpRelay = !s.noUDPRelay
        turn.checkOriginConsistency = s.checkOriginConsistency
        turn.mobility = s.mobility
        if s.noUDPRelay && !turn.tcpRelay && !s.stunOnly {
            warnings.append(
                "--no-udp-relay without TCP relaying (no TCP or TLS listener, or --no-tcp-relay): every Allocate gets 442")
        }
        if s.noSoftwareAttribute { turn.software = nil }
        if let name = s.serverName, name.isEmpty { throw ValidationError("--server-name must not be empty.") }
        guard (1...Int(AllocationTable.permissionLifetime)).contains(s.permissionLifetime) else {
            throw ValidationError(
                "--permission-lifetime \(s.permissionLifetime) must be 1...\(AllocationTable.permissionLifetime) seconds (it is for tests; RFC 8656 says 300).")
        }
        guard (1...Int(AllocationTable.channelLifetime)).contains(s.channelLifetime) else {
            throw ValidationError(
                "--channel-lifetime \(s.channelLifetime) must be 1...\(AllocationTable.channelLifetime) seconds (it is for tests; RFC 8656 says 600).")
        }
        turn.limits.permissionLifetime = UInt32(s.permissionLifetime)
        turn.limits.channelLifetime = UInt32(s.channelLifetime)
        if s.permissionLifetime != Int(AllocationTable.permissionLifetime)
            || s.channelLifetime != Int(AllocationTable.channelLifetime)
        {
            warnings.append(
                "permissions last \(s.permissionLifetime) s and channels \(s.channelLifetime) s (RFC 8656: 300 and 600): for testing only, clients refresh too late for shorter lifetimes")
        }
    }

    /// The service line of the summary: what is answered, what is relayed.
    var serviceSummary: String {
        var parts: [String] = []
        if !turn.answersBinding {
            parts.append("Binding not answered (--no-stun)")
        } else {
            parts.append(turn.authenticatesBinding ? "Binding with credentials (--secure-stun)" : "Binding for anyone")
        }
        if turn.stunOnly {
            parts.append("TURN requests ignored (--stun-only)")
        } else {
            var relays: [String] = []
            if turn.udpRelay { relays.append("UDP") }
            if turn.tcpRelay { relays.append("TCP") }
            parts.append("TURN allocations: \(relays.isEmpty ? "none" : relays.joined(separator: " and "))")
        }
        if turn.checkOriginConsistency { parts.append("ORIGIN consistency checked") }
        if turn.mobility { parts.append("RFC 8016 mobility") }
        parts.append(turn.software.map { "SOFTWARE \"\($0)\"" } ?? "no SOFTWARE attribute")
        var line = "service: " + parts.joined(separator: ", ")
        line += "; permissions last \(turn.limits.permissionLifetime) s, channels \(turn.limits.channelLifetime) s"
        if let serverName { line += "; server name \"\(serverName)\" (oAuth only in coturn; no effect)" }
        return line
    }
}
