import CCrypto

/// A TLS failure: what was being done, followed by OpenSSL's error queue.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) { self.description = description }

    /// `what` followed by the entries of this thread's OpenSSL error queue,
    /// which this empties (a stale entry would mislead the next
    /// SSL_get_error on the thread).
    static func fromQueue(_ what: String) -> TLSError {
        let queue = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 1024) { buffer in
            let length = uturn_tls_take_errors(buffer.baseAddress!, buffer.count)
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress!, count: length), as: UTF8.self)
        }
        return TLSError(queue.isEmpty ? what : "\(what): \(queue)")
    }
}

/// A TLS protocol version a context may be limited to.
public enum TLSVersion: Sendable {
    case tls12
    case tls13

    var wireValue: Int32 {
        switch self {
        case .tls12: TLS1_2_VERSION
        case .tls13: TLS1_3_VERSION
        }
    }
}

/// The server's TLS configuration (an OpenSSL `SSL_CTX`): certificate chain,
/// private key, TLS 1.2 or 1.3, and ALPN "stun.turn" (RFC 7443).
///
/// Immutable after `init`, so one context serves every worker thread:
/// creating streams from it concurrently is safe (OpenSSL reference-counts
/// the `SSL_CTX` atomically, and the session cache, the one part of it a
/// handshake would write, is off). Each `TLSStream` holds its own reference,
/// so a context may be released while its streams live on; a reload makes a
/// new context and leaves existing connections on the old one.
public final class TLSServerContext: @unchecked Sendable {
    /// The `SSL_CTX *`.
    let context: OpaquePointer
    public let certificateFile: String
    public let privateKeyFile: String

    /// Loads a PEM certificate chain (leaf first) and a PEM private key, and
    /// checks that the key belongs to the certificate.
    ///
    /// ALPN: a client that offers "stun.turn" gets it; a client that offers
    /// only other protocols, or no ALPN, is served without ALPN rather than
    /// refused, because this port speaks only TURN whatever the client names
    /// (see `uturn_tls_ctx_select_stun_turn`).
    public init(certificateFile: String, privateKeyFile: String, minVersion: TLSVersion = .tls12) throws(TLSError) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw .fromQueue("SSL_CTX_new") }
        self.context = context
        // From here on deinit frees the context if a step below throws.
        guard uturn_tls_ctx_configure(context, minVersion.wireValue, 0) == 1 else {
            throw .fromQueue("configuring TLS")
        }
        guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1 else {
            throw .fromQueue("cannot load the certificate chain from \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
            throw .fromQueue("cannot load the private key from \(privateKeyFile) (for certificate \(certificateFile))")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .fromQueue("the private key \(privateKeyFile) does not match the certificate \(certificateFile)")
        }
        uturn_tls_ctx_select_stun_turn(context)
    }

    deinit { SSL_CTX_free(context) }

    /// Writes a fresh self-signed certificate and its EC P-256 key (mode 0600)
    /// naming `commonName` (also as subjectAltName: an IP address when it
    /// parses as one), valid from an hour ago for `validDays` (1...365).
    /// For tests and demo setups: clients must be told to trust it.
    public static func writeSelfSignedCertificate(
        certificateFile: String, privateKeyFile: String, commonName: String, validDays: Int = 30
    ) throws(TLSError) {
        guard (1...365).contains(validDays) else { throw TLSError("validDays must be 1...365, not \(validDays)") }
        ERR_clear_error()
        guard uturn_tls_write_self_signed(certificateFile, privateKeyFile, commonName, Int32(validDays)) == 1 else {
            throw .fromQueue("cannot write a self-signed certificate to \(certificateFile) and \(privateKeyFile)")
        }
    }
}

/// A client's TLS configuration, for tests and the load generator.
///
/// It does NOT verify the server's certificate (no trust store, no name
/// check): it exists to exercise the server, not to protect a user. Thread
/// safety and lifetime as for `TLSServerContext`.
public final class TLSClientContext: @unchecked Sendable {
    /// The `SSL_CTX *`.
    let context: OpaquePointer

    /// `alpn`: protocols to offer, in order of preference (empty: no ALPN
    /// extension). `minVersion`/`maxVersion` pin the protocol (nil max: the
    /// newest the library has), e.g. to test TLS 1.2 against a server that
    /// also speaks 1.3.
    public init(alpn: [String] = ["stun.turn"], minVersion: TLSVersion = .tls12, maxVersion: TLSVersion? = nil)
        throws(TLSError)
    {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw .fromQueue("SSL_CTX_new") }
        self.context = context
        guard uturn_tls_ctx_configure(context, minVersion.wireValue, maxVersion?.wireValue ?? 0) == 1 else {
            throw .fromQueue("configuring TLS")
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        guard !alpn.isEmpty else { return }
        // The wire form RFC 7301 §3.1 defines: each name prefixed by its length.
        var wire: [UInt8] = []
        for name in alpn {
            let utf8 = Array(name.utf8)
            guard (1...255).contains(utf8.count) else { throw TLSError("ALPN name must be 1...255 bytes: \"\(name)\"") }
            wire.append(UInt8(utf8.count))
            wire += utf8
        }
        // Unlike most of OpenSSL, this one returns 0 on success.
        guard SSL_CTX_set_alpn_protos(context, wire, UInt32(wire.count)) == 0 else {
            throw .fromQueue("setting ALPN")
        }
    }

    deinit { SSL_CTX_free(context) }
}
