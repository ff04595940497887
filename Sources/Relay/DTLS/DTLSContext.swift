import CCrypto

/// The server's DTLS configuration (an OpenSSL `SSL_CTX` for DTLS 1.2):
/// certificate chain, private key and the cookie exchange (RFC 6347 §4.2.1)
/// whose callbacks live in CCrypto's dtls.c.
///
/// Immutable after `init`, so one context serves every worker, as
/// `TLSServerContext` does; each session's `SSL` holds its own reference, so
/// a reload (SIGHUP) makes a new context and leaves open sessions on the old.
public final class DTLSServerContext: @unchecked Sendable {
    /// The `SSL_CTX *`.
    let context: OpaquePointer
    public let certificateFile: String
    public let privateKeyFile: String

    public init(certificateFile: String, privateKeyFile: String) throws(TLSError) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        ERR_clear_error()
        guard let context = SSL_CTX_new(DTLS_server_method()) else { throw .fromQueue("SSL_CTX_new (DTLS)") }
        self.context = context
        guard uturn_dtls_ctx_configure(context) == 1 else { throw .fromQueue("configuring DTLS") }
        guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1 else {
            throw .fromQueue("cannot load the certificate chain from \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
            throw .fromQueue("cannot load the private key from \(privateKeyFile) (for certificate \(certificateFile))")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .fromQueue("the private key \(privateKeyFile) does not match the certificate \(certificateFile)")
        }
    }

    deinit { SSL_CTX_free(context) }
}
