import ArgumentParser
import STUN
import TURN

extension Settings {
    /// Abuse group (`AbuseOptions`): the per-source request limits. Runs
    /// after the engine group, since the total is shared by the workers.
    static func abuse(_ a: AbuseOptions, workers: Int, turn: inout TURNConfiguration) throws(ValidationError) {
        let ceiling = 10_000_000
        for (flag, value) in [
            ("--failed-request-rate", a.failedRequestRate), ("--failed-request-rate-total", a.failedRequestRateTotal),
            ("--binding-request-rate", a.bindingRequestRate),
        ] where !(0...ceiling).contains(value) {
            throw ValidationError("\(flag) \(value) must be 0 (no limit) to \(ceiling) per second.")
        }
        var limits = SourceRateLimits()
        limits.failedPerSecond = UInt64(a.failedRequestRate)
        limits.bindingPerSecond = UInt64(a.bindingRequestRate)
        if a.failedRequestRateTotal > 0 {
            limits.failedTotalPerSecond = UInt64(max(1, a.failedRequestRateTotal / max(1, workers)))
        }
        turn.sourceLimits = limits
        guard let policy = AlternatePolicy(parsing: a.alternateServerPolicy) else {
            throw ValidationError(
                "--alternate-server-policy \"\(a.alternateServerPolicy)\" must be always, draining or allocations:N.")
        }
        var servers: [TransportAddress] = []
        for text in a.alternateServers {
            guard let address = Settings.alternateAddress(text) else {
                throw ValidationError(
                    "--alternate-server \"\(text)\" must be an IP address with an optional port: 192.0.2.7, 192.0.2.7:3478, [2001:db8::7]:3478.")
            }
            if !servers.contains(address) { servers.append(address) }
        }
        turn.alternates = AlternateServers(servers: servers, policy: policy)
        if let path = a.nonceSecretFile {
            let text: String
            do { text = try SecretFile.read(path: path, flag: "--nonce-secret-file") } catch {
                throw ValidationError(error.description + ".")
            }
            let material = SecretFile.trimmed(text)
            guard let fleet = NonceCodec(fleetSecret: material, lifetime: turn.nonces.lifetime) else {
                throw ValidationError(
                    "--nonce-secret-file \(path) holds \(material.count) bytes; a fleet secret needs 16 or more (e.g. openssl rand -hex 32).")
            }
            turn.nonces = fleet
        }
    }

    /// `ip`, `ip:port`, `[ipv6]`, `[ipv6]:port` or a bare IPv6 address; port 3478 when absent.
    static func alternateAddress(_ text: String) -> TransportAddress? {
        if let ip = IPAddress(text) { return TransportAddress(ip: ip, port: 3478) }
        if text.hasPrefix("["), text.hasSuffix("]"), let ip = IPAddress(String(text.dropFirst().dropLast())) {
            return TransportAddress(ip: ip, port: 3478)
        }
        guard let address = TransportAddress(text), address.port != 0 else { return nil }
        return address
    }

    /// The limits line of the summary.
    var abuseSummary: String {
        let l = turn.sourceLimits
        func rate(_ n: UInt64) -> String { n == 0 ? "no limit" : "\(n)/s" }
        return "request limits per source without an allocation: refusals \(rate(l.failedPerSecond)), Binding \(rate(l.bindingPerSecond)); refusals per worker \(rate(l.failedTotalPerSecond)); kernel source filter \(engine.kernelSourceFilter.rawValue)"
    }

    /// The alternate-server line of the summary (nil: none).
    var alternateSummary: String? {
        let a = turn.alternates
        guard !a.servers.isEmpty else { return nil }
        return "alternate servers (\(a.policy.description)): \(a.servers.map(\.description).joined(separator: ", "))"
    }
}
