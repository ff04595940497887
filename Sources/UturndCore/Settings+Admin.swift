import ArgumentParser
import Glibc
import Relay
import STUN

extension Settings {
    /// Admin API group (`AdminOptions`): where it listens (nil: off) and its
    /// token. The listener needs a token; a token file that cannot be read
    /// or is empty stops the start (and a reload), never an open API.
    static func adminEndpoint(_ o: AdminOptions, warnings: inout [String]) throws(ValidationError) -> (
        TransportAddress?, AdminToken?, TLSServerContext?
    ) {
        guard let text = o.adminListen else {
            if o.adminTokenFile != nil || o.adminCert != nil || o.adminPkey != nil {
                warnings.append(
                    "--admin-token-file, --admin-cert and --admin-pkey have no effect without --admin-listen (the admin API is off)")
            }
            return (nil, nil, nil)
        }
        guard let address = TransportAddress(text), address.port != 0 else {
            throw ValidationError(
                "--admin-listen '\(text)': expected address:port with a port 1...65535, such as 127.0.0.1:9642 or [::1]:9642.")
        }
        if address.ip.isMulticast {
            throw ValidationError("--admin-listen \(address): a multicast address cannot accept TCP connections.")
        }
        guard let path = o.adminTokenFile else {
            throw ValidationError(
                "--admin-listen needs --admin-token-file (a file holding the bearer token clients must send).")
        }
        let token: AdminToken
        do { token = try AdminToken.load(path: path) } catch { throw ValidationError(error.description + ".") }
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
            warnings.append("--admin-token-file \(path) can be read by other users; chmod 600 it")
        }
        var tls: TLSServerContext?
        switch (o.adminCert, o.adminPkey) {
        case (nil, nil):
            if !Self.isLoopback(address.ip) {
                warnings.append(
                    "--admin-listen \(address) is not a loopback address and has no --admin-cert: the token crosses the network in clear")
            }
        case (let cert?, let key?):
            do { tls = try TLSServerContext(certificateFile: cert, privateKeyFile: key) } catch {
                throw ValidationError("--admin-cert/--admin-pkey: \(error.description).")
            }
        default:
            throw ValidationError("--admin-cert and --admin-pkey go together: give both for HTTPS, or neither.")
        }
        return (address, token, tls)
    }

    static func isLoopback(_ ip: IPAddress) -> Bool {
        ip.family == .v4 ? ip.v4 >> 24 == 127 : ip.high == 0 && ip.low == 1
    }
}
