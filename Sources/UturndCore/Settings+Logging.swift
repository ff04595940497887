import ArgumentParser
import STUN

extension Settings {
    /// Logging group (`LoggingOptions`), `--log-file`: where log lines go
    /// (default: standard error).
    static func logging(_ o: LoggingOptions) throws(ValidationError) -> LogDestination {
        switch o.logFile {
        case nil, "stderr", "-": return .standardError
        case "stdout": return .standardOutput
        case "syslog":
            throw ValidationError("--log-file syslog is not supported; log to stderr (journald keeps it) or a file.")
        case let path?:
            if path.isEmpty { throw ValidationError("--log-file must not be empty.") }
            return .file(path)
        }
    }

    /// Metrics endpoint (`LoggingOptions`), `--metrics-listen`: the address
    /// the Prometheus endpoint listens on (nil: off).
    static func metricsEndpoint(_ o: LoggingOptions) throws(ValidationError) -> TransportAddress? {
        guard let text = o.metricsListen else { return nil }
        guard let address = TransportAddress(text), address.port != 0 else {
            throw ValidationError(
                "--metrics-listen '\(text)': expected address:port with a port 1...65535, such as 127.0.0.1:9641 or [::1]:9641.")
        }
        if address.ip.isMulticast {
            throw ValidationError("--metrics-listen \(address): a multicast address cannot accept TCP connections.")
        }
        return address
    }
}
