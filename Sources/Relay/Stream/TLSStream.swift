import CCrypto

/// One TLS connection's state machine with no transport: the caller moves
/// ciphertext in and out and OpenSSL never sees a socket, never blocks and
/// never starts a thread (RFC 8656 §3.1, TURN over TLS).
///
/// The transport is an OpenSSL BIO pair: two fixed buffers of `bufferSize`
/// bytes, one per direction, allocated here once. Together with OpenSSL's
/// own record buffers (about 17 KiB each way, kept for the connection's
/// life) that is roughly 70 KiB per connection at the default size. Nothing
/// here allocates per call; OpenSSL 3.0 itself mallocs and frees a 40-byte
/// bookkeeping struct (WPACKET) 2 times per record written with TLS 1.2, 3
/// times per record written and once per record read with TLS 1.3.
///
/// How the engine drives it, after each read of ciphertext from the socket:
///
///     fed = feedCiphertext(received)           // keep the rest (input full)
///     loop: switch readPlaintext(into: plain) {
///         case .bytes(n): frame and handle plain[0..<n]; continue
///         case .wantWrite: send takeCiphertext(...); continue   // output full
///         case .wantMore: break loop            // the handshake may have produced output
///         case .closed, .failed: send what is pending, then close
///     }
///     send takeCiphertext(...) while pendingCiphertext > 0
///     feed the rest of `received` if some was left, and go round again
///
/// and to send, `writePlaintext` then `takeCiphertext`.
///
/// Ownership: a Copyable struct around two raw pointers (the `SSL *` and the
/// caller's half of the BIO pair), so it can sit in a preallocated table.
/// Copies alias one connection: exactly one place (the table slot) owns it
/// and calls `free()` once; every other copy is dangling after that and must
/// not be kept. A stream may move between threads but must not be used by
/// two at once.
public struct TLSStream: @unchecked Sendable {
    /// Bytes per direction of the BIO pair: one full TLS record (16 KiB of
    /// plaintext plus the worst-case overhead, 325 bytes for TLS 1.2 CBC) fits,
    /// so `writePlaintext` can take 16 KiB at a time once the output is drained.
    public static let defaultBufferSize = 17 * 1024

    /// Smallest `bufferSize` accepted: room for a record worth sending.
    public static let minimumBufferSize = 4096

    /// Plaintext per record (RFC 8446 §5.1, RFC 5246 §6.2.1).
    static let maxRecordPlaintext = 16384

    /// Headroom `writePlaintext` keeps in the output buffer beyond the
    /// plaintext: record header, IV, MAC or tag and CBC padding (325 at most,
    /// SSL3_RT_MAX_ENCRYPTED_OVERHEAD + 5) plus a small record OpenSSL may
    /// send first (a TLS 1.3 KeyUpdate answer).
    static let recordHeadroom = 512

    /// The `SSL *`; nil once freed.
    private var ssl: OpaquePointer?
    /// The caller's half of the BIO pair: ciphertext is written into it and
    /// read out of it. The `SSL *` owns the other half.
    private var network: OpaquePointer?
    /// Bytes of the `writePlaintext` call that OpenSSL could only partly send:
    /// it holds their encrypted record and must be called again with the
    /// same bytes (OpenSSL's retry rule). 0 almost always.
    private var stalledWriteLength = 0
    /// Set by the first fatal error. OpenSSL then reports the handshake as
    /// not complete, which without this flag would read as "not yet".
    private var hasFailed = false

    /// A server-side stream (it waits for the ClientHello).
    public init(server context: TLSServerContext, bufferSize: Int = defaultBufferSize) throws(TLSError) {
        try self.init(context: context.context, accept: true, bufferSize: bufferSize)
    }

    /// A client-side stream: its first `readPlaintext` queues the ClientHello.
    public init(client context: TLSClientContext, bufferSize: Int = defaultBufferSize) throws(TLSError) {
        try self.init(context: context.context, accept: false, bufferSize: bufferSize)
    }

    private init(context: OpaquePointer, accept: Bool, bufferSize: Int) throws(TLSError) {
        guard bufferSize >= Self.minimumBufferSize else {
            throw TLSError("TLS buffer size \(bufferSize) is below \(Self.minimumBufferSize)")
        }
        ERR_clear_error()
        guard let ssl = SSL_new(context) else { throw .fromQueue("SSL_new") }
        var inner: OpaquePointer?
        var network: OpaquePointer?
        // Writes to `inner` (by SSL) are read from `network`, and the other way round.
        guard BIO_new_bio_pair(&inner, bufferSize, &network, bufferSize) == 1 else {
            SSL_free(ssl)
            throw .fromQueue("BIO_new_bio_pair")
        }
        // One reference for both directions; SSL_free releases it.
        SSL_set_bio(ssl, inner, inner)
        if accept { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
        self.ssl = ssl
        self.network = network
    }

    /// Releases the connection: the `SSL *` (and with it the BIO pair's inner
    /// half) and the caller's half. Safe to call twice on the same value.
    public mutating func free() {
        if let ssl { SSL_free(ssl) }
        if let network { BIO_free(network) }
        ssl = nil
        network = nil
        stalledWriteLength = 0
        hasFailed = false
    }

    /// Whether `free()` has been called on this value.
    public var isFreed: Bool { ssl == nil }

    private var live: OpaquePointer {
        guard let ssl else { preconditionFailure("TLSStream used after free()") }
        return ssl
    }

    private var liveNetwork: OpaquePointer {
        guard let network else { preconditionFailure("TLSStream used after free()") }
        return network
    }

    // MARK: Ciphertext

    /// Takes ciphertext received from the network; returns how many bytes fit
    /// (the input buffer has `bufferSize` bytes of room). The caller keeps the
    /// rest and offers it again after `readPlaintext` has made room.
    public mutating func feedCiphertext(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
        // A full pair returns -1 with the retry flag; nothing goes on the error queue.
        let n = BIO_write(liveNetwork, base, Int32(clamping: bytes.count))
        return n > 0 ? Int(n) : 0
    }

    /// Room for ciphertext right now: `feedCiphertext` takes up to this much.
    public var ciphertextRoom: Int { Int(BIO_ctrl_get_write_guarantee(liveNetwork)) }

    /// Ciphertext waiting to be sent (handshake flights, records, alerts).
    public var pendingCiphertext: Int { Int(BIO_ctrl_pending(liveNetwork)) }

    /// Moves up to `buffer.count` bytes of ciphertext to send into `buffer`;
    /// returns how many.
    public mutating func takeCiphertext(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        let n = BIO_read(liveNetwork, base, Int32(clamping: buffer.count))
        return n > 0 ? Int(n) : 0
    }

    // MARK: Plaintext

    /// What `readPlaintext` produced.
    public enum ReadResult: Sendable {
        /// `n` > 0 bytes of plaintext at the start of the buffer.
        case bytes(Int)
        /// Nothing more until more ciphertext is fed. The call may have queued
        /// ciphertext (a handshake flight): send `pendingCiphertext` first.
        case wantMore
        /// OpenSSL has output that does not fit the full output buffer: take
        /// and send ciphertext, then call `readPlaintext` again (waiting for
        /// the peer instead would stall a handshake).
        case wantWrite
        /// The peer sent close_notify. Answer with `sendCloseNotify()` if
        /// wanted, send what is pending, and close.
        case closed
        /// Fatal (bad record, handshake failure, protocol violation). An alert
        /// may be pending: send `pendingCiphertext` if convenient, then close.
        /// Creating the error allocates; this is the connection's last event.
        case failed(TLSError)
    }

    /// Advances the handshake if it is not complete, then decrypts into
    /// `buffer` (non-empty; 16 KiB holds any record).
    public mutating func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        precondition(!buffer.isEmpty, "readPlaintext needs room")
        let ssl = live
        guard !hasFailed else { return .failed(TLSError("TLS connection has already failed")) }
        // SSL_get_error reads the thread's error queue, which must start empty.
        ERR_clear_error()
        if SSL_is_init_finished(ssl) == 0 {
            let status = SSL_do_handshake(ssl)
            guard status == 1 else { return outcome(ssl, status, "TLS handshake failed") }
        }
        var count = 0
        let status = SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count)
        guard status == 1 else { return outcome(ssl, status, "TLS read failed") }
        return .bytes(count)
    }

    private mutating func outcome(_ ssl: OpaquePointer, _ status: Int32, _ what: String) -> ReadResult {
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ: return .wantMore
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case let code:
            hasFailed = true
            return .failed(.fromQueue("\(what) (SSL_get_error \(code))"))
        }
    }

    /// Encrypts from the start of `bytes`; returns how many bytes were taken,
    /// at most one record's worth (16 KiB) per call, and only what fits the
    /// output buffer with room for the record's overhead: 0 when the caller
    /// must first take ciphertext, and 0 before the handshake completes.
    ///
    /// The caller offers the untaken rest again later, from the same position
    /// (OpenSSL may already hold those bytes encrypted, after a write it could
    /// only partly queue; the buffer's address may change). Throws on a fatal
    /// error, and on every call after one (from here or `readPlaintext`):
    /// close the connection.
    public mutating func writePlaintext(_ bytes: UnsafeRawBufferPointer) throws(TLSError) -> Int {
        let ssl = live
        guard !hasFailed else { throw TLSError("TLS connection has already failed") }
        guard let base = bytes.baseAddress, !bytes.isEmpty, SSL_is_init_finished(ssl) == 1 else { return 0 }
        let length: Int
        if stalledWriteLength > 0 {
            guard bytes.count >= stalledWriteLength else {
                hasFailed = true
                throw TLSError(
                    "writePlaintext: \(bytes.count) bytes offered after a stalled write of \(stalledWriteLength)")
            }
            length = stalledWriteLength
        } else {
            // Sizing the record to the free room means the record is queued
            // whole, so the retry rule above almost never comes into play.
            let room = Int(BIO_ctrl_get_write_guarantee(SSL_get_wbio(ssl))) - Self.recordHeadroom
            length = min(bytes.count, Self.maxRecordPlaintext, room)
            guard length > 0 else { return 0 }
        }
        ERR_clear_error()
        var written = 0
        let status = SSL_write_ex(ssl, base, length, &written)
        if status == 1 {
            stalledWriteLength = 0
            return written
        }
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ:
            stalledWriteLength = length
            return 0
        case SSL_ERROR_ZERO_RETURN:
            hasFailed = true
            throw TLSError("TLS write after the connection was shut down")
        case let code:
            hasFailed = true
            throw .fromQueue("TLS write failed (SSL_get_error \(code))")
        }
    }

    /// Queues close_notify (take and send `pendingCiphertext` afterwards).
    /// Does nothing before the handshake completes: there is no session to
    /// close, just drop the connection.
    public mutating func sendCloseNotify() {
        let ssl = live
        guard !hasFailed, SSL_is_init_finished(ssl) == 1 else { return }
        ERR_clear_error()
        // 0: sent, peer's not yet received; 1: both done; <0: e.g. output
        // full, and a later call retries. None of these needs handling here.
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    // MARK: State

    /// True once the handshake has completed, false again after a fatal error.
    public var isHandshakeComplete: Bool { !hasFailed && SSL_is_init_finished(live) == 1 }

    /// True after `readPlaintext` returned `.failed` or `writePlaintext` threw.
    public var hasFailedFatally: Bool { hasFailed }

    /// The protocol ALPN selected, nil without one. Control path only: it
    /// allocates a String.
    public var negotiatedALPN: String? {
        var name: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(live, &name, &length)
        guard let name, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: name, count: Int(length)), as: UTF8.self)
    }

    /// "TLSv1.3", "TLSv1.2", ... (before the handshake: the highest version offered or accepted).
    public var protocolVersion: String { String(cString: SSL_get_version(live)) }
}
