import ArgumentParser
import Relay
import STUN
import TURN

extension Settings {
    /// TCP/TLS group (`StreamOptions`): the TCP and TLS listeners on the
    /// listening addresses, RFC 6062 TCP relaying and the per-connection
    /// limits, set on `engine` and `turn`.
    static func streams(
        _ st: StreamOptions, addresses: ListeningAddresses, engine: inout EngineConfig,
        turn: inout TURNConfiguration, notices: inout [String]
    ) throws(ValidationError) {
        if !st.noTCP { engine.tcpListen = engine.listen }
        try Settings.tlsListeners(st, addresses: addresses, engine: &engine, notices: &notices)
        // RFC 6062 needs a client on TCP or TLS, so it is on when one can come.
        turn.tcpRelay = !st.noTCPRelay && !(engine.tcpListen.isEmpty && engine.tlsListen.isEmpty)
        engine.streamConnections = st.tcpConnections
        engine.streamConnectionsPerIP = st.tcpConnectionsPerIP
        engine.streamSendQueue = st.tcpSendQueue
        engine.streamIdleSeconds = st.tcpIdleTimeout
        engine.tlsHandshakeSeconds = st.tlsHandshakeTimeout
        engine.streamStallSeconds = st.tcpStallTimeout
    }

    /// `--cert` and `--pkey` (both or neither): the TLS context, loaded now,
    /// and a listener on `--tls-listening-port` of each listening address,
    /// unless `--no-tls`.
    static func tlsListeners(
        _ st: StreamOptions, addresses: ListeningAddresses, engine: inout EngineConfig, notices: inout [String]
    ) throws(ValidationError) {
        switch (st.cert, st.pkey) {
        case (nil, nil):
            break
        case (nil, _?):
            throw ValidationError("--pkey is given without --cert; TLS needs both.")
        case (_?, nil):
            throw ValidationError("--cert is given without --pkey; TLS needs both.")
        case (let cert?, let key?):
            if st.noTLS {
                notices.append("--no-tls: no TLS listener although --cert and --pkey are given")
            } else {
                let tlsPort = try Settings.port(st.tlsListeningPort, flag: "--tls-listening-port")
                if tlsPort == addresses.port && !st.noTCP {
                    throw ValidationError(
                        "--tls-listening-port \(tlsPort) is also the TCP listening port; choose another (coturn's default is 5349) or add --no-tcp.")
                }
                do {
                    engine.tls = try TLSServerContext(certificateFile: cert, privateKeyFile: key)
                } catch {
                    throw ValidationError("--cert \(cert) / --pkey \(key): \(error.description)")
                }
                engine.tlsListen = addresses.listenIPs.map { TransportAddress(ip: $0, port: tlsPort) }
            }
        }
    }

    /// With `--cert` and `--pkey`: a DTLS listener (TURN over DTLS, UDP) on
    /// `--dtls-listening-port` (default: the TLS port, as coturn serves TLS
    /// and DTLS on one port number) of each listening address, unless `--no-dtls`.
    static func dtlsListeners(
        _ st: StreamOptions, noDTLS: Bool, addresses: ListeningAddresses, engine: inout EngineConfig,
        notices: inout [String]
    ) throws(ValidationError) {
        guard let cert = st.cert, let key = st.pkey else {
            if st.dtlsListeningPort != nil {
                notices.append("--dtls-listening-port: no DTLS listener without --cert and --pkey")
            }
            return
        }
        if noDTLS {
            if st.dtlsListeningPort != nil { notices.append("--dtls-listening-port is ignored with --no-dtls") }
            return
        }
        let port = try Settings.port(st.dtlsListeningPort ?? st.tlsListeningPort, flag: "--dtls-listening-port")
        do {
            engine.dtls = try DTLSServerContext(certificateFile: cert, privateKeyFile: key)
        } catch {
            throw ValidationError("--cert \(cert) / --pkey \(key) (DTLS): \(error.description)")
        }
        engine.dtlsListen = addresses.listenIPs.map { TransportAddress(ip: $0, port: port) }
    }
}
