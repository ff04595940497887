import CCrypto
import STUN
import TURN

/// One DTLS client (RFC 8656 §3.1, TURN over DTLS): its `SSL` with two
/// memory BIOs, keyed by the client's 5-tuple.
struct DTLSSession {
    /// The `SSL *`; nil: the slot is free.
    var ssl: OpaquePointer? = nil
    var fiveTuple = FiveTuple(
        client: .init(ip: IPAddress(v4: 0), port: 0), server: .init(ip: IPAddress(v4: 0), port: 0), transport: .dtls)
    /// Index of the listener (DatagramPart.listeners) the client talks to.
    var listener: Int32 = 0
    /// Monotonic seconds when the session was made and when the client last sent a datagram.
    var startedSeconds: UInt32 = 0
    var lastSeenSeconds: UInt32 = 0
    var established = false
    /// A write failed: the session is closed at the next tick or datagram.
    var failed = false
}

/// A worker's DTLS side: the sessions table (fixed capacity, allocated once),
/// the listening `SSL` that runs the stateless cookie exchange, the cookie
/// secrets, and the scratch buffers for plaintext and ciphertext.
///
/// Memory: a session costs an `SSL` (tens of KiB inside OpenSSL) and is made
/// only for a ClientHello carrying a cookie made for its source address, so
/// a flood of spoofed ClientHellos costs a HelloVerifyRequest each and no
/// state. The per-session work is inherent to DTLS (OpenSSL allocates
/// internally per handshake); the per-record path here allocates nothing:
/// the index is a dictionary reserved for `capacity` entries.
struct DTLSPart: ~Copyable {
    /// DTLS record header: type, version, epoch, sequence number, length.
    static let recordHeader = 13
    /// Largest datagram built from several records, and the MTU handshake
    /// messages are fragmented to: 1200 fits any path an IPv6 client has.
    static let mtu = 1200
    /// Plaintext of one record, and ciphertext read at once: a whole record
    /// of the largest size (`SendBatcher.largeSize`).
    static let scratchBytes = SendBatcher.largeSize
    /// Most plaintext one DTLS 1.2 record carries (2^14, RFC 5246 §6.2.1):
    /// a STUN message or ChannelData frame for a client must fit it whole.
    static let maxPlaintext = 16_384

    private(set) var context: DTLSServerContext?
    /// `uturn_dtls_cookies *` (nil when DTLS is off).
    let cookies: OpaquePointer?
    /// The SSL that answers ClientHellos from unknown clients (nil when off).
    private(set) var listening: OpaquePointer?
    let sessions: UnsafeMutablePointer<DTLSSession>
    let capacity: Int
    private var free: SlotFreeList
    private var index: [FiveTuple: UInt32]
    /// Decrypted records are handled from here.
    let plain: UnsafeMutableRawBufferPointer
    /// Ciphertext read from an SSL's write BIO before it is cut into datagrams.
    let cipher: UnsafeMutableRawBufferPointer
    /// Peer data gathered into one piece (header, payload, padding) for
    /// SSL_write: `maxPlaintext` bytes.
    let gather: UnsafeMutableRawBufferPointer
    let perSource: Int
    let handshakeSeconds: UInt32
    let idleSeconds: UInt32
    /// When the cookie secret was last rotated.
    var rotatedSeconds: UInt32 = 0
    /// Secrets rotate this often; a cookie is good for one to two periods.
    static let rotationSeconds: UInt32 = 30

    var count: Int { capacity - free.count }

    init(config: EngineConfig, workerIndex: Int) throws(EngineError) {
        let on = !config.dtlsListen.isEmpty && config.dtls != nil
        // The fallible steps first, before any stored property is set.
        var cookies: OpaquePointer? = nil
        var listening: OpaquePointer? = nil
        if on, let context = config.dtls {
            guard let c = uturn_dtls_cookies_new() else {
                throw EngineError("worker \(workerIndex): cannot draw a DTLS cookie secret")
            }
            guard let l = uturn_dtls_ssl_new(context.context, c, Self.mtu) else {
                uturn_dtls_cookies_free(c)
                throw EngineError("worker \(workerIndex): \(TLSError.fromQueue("cannot create a DTLS session"))")
            }
            cookies = c
            listening = l
        }
        self.cookies = cookies
        self.listening = listening
        capacity = on ? config.streamConnections : 0
        perSource = config.streamConnectionsPerIP
        handshakeSeconds = UInt32(config.tlsHandshakeSeconds)
        idleSeconds = UInt32(config.streamIdleSeconds)
        sessions = .allocate(capacity: max(1, capacity))
        sessions.initialize(repeating: DTLSSession(), count: max(1, capacity))
        free = SlotFreeList(capacity: capacity)
        index = [:]
        index.reserveCapacity(capacity)
        let bytes = on ? Self.scratchBytes : 16
        plain = .allocate(byteCount: bytes, alignment: 16)
        cipher = .allocate(byteCount: bytes, alignment: 16)
        gather = .allocate(byteCount: on ? Self.maxPlaintext : 16, alignment: 16)
        context = on ? config.dtls : nil
    }

    deinit {
        for i in 0..<capacity { if let ssl = sessions[i].ssl { SSL_free(ssl) } }
        if let listening { SSL_free(listening) }
        if let cookies { uturn_dtls_cookies_free(cookies) }
        sessions.deallocate()
        plain.deallocate()
        cipher.deallocate()
        gather.deallocate()
    }

    /// A fresh listening SSL from the current context. False when OpenSSL
    /// could not make one (out of memory): new clients wait for the next try.
    mutating func renewListening() -> Bool {
        if let listening { SSL_free(listening) }
        listening = nil
        guard let context, let cookies else { return false }
        listening = uturn_dtls_ssl_new(context.context, cookies, Self.mtu)
        return listening != nil
    }

    /// A reload: new clients get `new`; open sessions keep theirs.
    mutating func replaceContext(_ new: DTLSServerContext) {
        context = new
        _ = renewListening()
    }

    /// Sets the address cookies are made or checked for: family, IP, port.
    func setPeer(_ address: TransportAddress) {
        guard let cookies else { return }
        var bytes = (UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &bytes) { p in
            p[0] = address.ip.family == .v4 ? 4 : 6
            address.ip.store(to: p.baseAddress! + 1)
            let n = 1 + address.ip.byteCount
            p[n] = UInt8(address.port >> 8)
            p[n + 1] = UInt8(address.port & 0xFF)
            uturn_dtls_cookies_set_peer(cookies, p.baseAddress!, n + 2)
        }
    }

    mutating func rotateCookies(nowSeconds: UInt32) {
        guard let cookies, nowSeconds &- rotatedSeconds >= Self.rotationSeconds else { return }
        rotatedSeconds = nowSeconds
        _ = uturn_dtls_cookies_rotate(cookies)
    }

    @inline(__always)
    func slot(of fiveTuple: FiveTuple) -> UInt32? { index[fiveTuple] }

    /// Sessions from `ip` on this worker (a linear scan: new sessions only).
    func count(from ip: IPAddress) -> Int {
        var n = 0
        for i in 0..<capacity where sessions[i].ssl != nil && sessions[i].fiveTuple.client.ip == ip { n += 1 }
        return n
    }

    /// Why a new session from `client` may not be made, or nil.
    func refusal(for client: TransportAddress) -> String? {
        if free.count == 0 { return "\(capacity) DTLS sessions already open (--tcp-connections)" }
        if perSource > 0 && count(from: client.ip) >= perSource {
            return "\(perSource) DTLS sessions from \(client.ip) already open (--tcp-connections-per-ip)"
        }
        return nil
    }

    /// Makes the listening SSL (which has just verified a cookie) the
    /// session of `fiveTuple`, and a fresh one the listening SSL.
    mutating func adoptListening(_ fiveTuple: FiveTuple, listener: Int, nowSeconds: UInt32) -> UInt32? {
        guard let ssl = listening, let slot = free.take() else { return nil }
        sessions[Int(slot)] = DTLSSession(
            ssl: ssl, fiveTuple: fiveTuple, listener: Int32(listener), startedSeconds: nowSeconds,
            lastSeenSeconds: nowSeconds)
        index[fiveTuple] = slot
        listening = nil
        _ = renewListening()
        return slot
    }

    /// Whether `bytes`, sent from session `slot`'s 5-tuple, is the first
    /// fragment of a ClientHello (epoch 0, handshake type 1) with another
    /// client random than the one that made the session: a client that
    /// started over, not a retransmission. Only epoch-0 handshake records
    /// get this far; application data is ruled out by its first byte.
    func isNewClientHello(_ bytes: UnsafeRawBufferPointer, for slot: UInt32) -> Bool {
        // Record header (13), handshake header (12), client_version (2), random (32).
        let randomAt = Self.recordHeader + 12 + 2
        guard bytes.count >= randomAt + 32, bytes[0] == 22, bytes[3] == 0, bytes[4] == 0,
            bytes[Self.recordHeader] == 1,
            bytes[Self.recordHeader + 6] == 0, bytes[Self.recordHeader + 7] == 0, bytes[Self.recordHeader + 8] == 0,
            let ssl = sessions[Int(slot)].ssl
        else { return false }
        var random: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &random) { r in
            guard SSL_get_client_random(ssl, r.baseAddress!.assumingMemoryBound(to: UInt8.self), 32) == 32 else {
                return false
            }
            return !r.elementsEqual(UnsafeRawBufferPointer(rebasing: bytes[randomAt..<randomAt + 32]))
        }
    }

    /// Frees a session's SSL and slot.
    mutating func remove(_ slot: UInt32) {
        let s = sessions[Int(slot)]
        guard let ssl = s.ssl else { return }
        SSL_free(ssl)
        index.removeValue(forKey: s.fiveTuple)
        sessions[Int(slot)] = DTLSSession()
        free.give(slot)
    }

    /// Cuts the ciphertext waiting in `ssl`'s write BIO into datagrams of
    /// whole records (`splitRecords`) and hands each to `send`. Returns how
    /// many datagrams were dropped (bigger than `maxDatagram`, or refused by `send`).
    static func drainCiphertext(
        _ ssl: OpaquePointer, cipher: UnsafeMutableRawBufferPointer, maxDatagram: Int,
        _ send: (UnsafeRawBufferPointer) -> Bool
    ) -> Int {
        guard let wbio = SSL_get_wbio(ssl) else { return 0 }
        var dropped = 0
        while true {
            let n = Int(BIO_read(wbio, cipher.baseAddress, Int32(cipher.count)))
            guard n > 0 else { break }
            let bytes = UnsafeRawBufferPointer(rebasing: cipher[0..<n])
            splitRecords(bytes, mtu: mtu) { range in
                guard range.count <= maxDatagram, send(UnsafeRawBufferPointer(rebasing: bytes[range])) else {
                    dropped += 1
                    return
                }
            }
        }
        return dropped
    }

    /// Groups the DTLS records in `bytes` (13-byte header, length in bytes
    /// 11-12) into datagrams: consecutive records while they fit `mtu`
    /// bytes together, a bigger record alone. OpenSSL writes whole records,
    /// so a truncated tail cannot come from it; it is left out.
    static func splitRecords(_ bytes: UnsafeRawBufferPointer, mtu: Int, _ datagram: (Range<Int>) -> Void) {
        var start = 0
        var offset = 0
        while offset + recordHeader <= bytes.count {
            let length = Int(bytes[offset + 11]) << 8 | Int(bytes[offset + 12])
            let end = offset + recordHeader + length
            guard end <= bytes.count else { break }
            if end - start > mtu && offset > start {
                datagram(start..<offset)
                start = offset
            }
            offset = end
        }
        if offset > start { datagram(start..<offset) }
    }
}
