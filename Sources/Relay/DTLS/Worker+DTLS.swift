import CCrypto
import Glibc
import STUN
import TURN

// TURN over DTLS (RFC 8656 §3.1; RFC 7350): datagrams on a DTLS listener
// are records of a client's session. Decrypted, each record is one STUN
// message or ChannelData frame and goes through the same routing as plain
// UDP (with transport .dtls in its 5-tuple); answers and peer data for the
// client are encrypted into records and sent as datagrams on the listener.
// Relaying to peers stays plain UDP. Allocations of DTLS clients never get
// kernel fast-path routes (those are for transport .udp only: see
// OffloadRoutes and Worker+FastPath).
extension Worker {
    /// A receive on DTLS listener `li` (a GRO train is walked datagram by datagram).
    mutating func fromDTLSClient(listener li: Int, buffer h: UInt16, length: Int32, now: MonotonicTime) {
        guard let r = reactor.received(buffer: h, length: length, singleShotHeader: li) else {
            counters.add(.dropsTruncated)
            return
        }
        if r.segmentSize == 0 {
            dtlsDatagram(r.payload, from: r.source, listener: li, now: now)
            return
        }
        countTrain(r)
        var offset = 0
        while offset < r.payload.count {
            let d = r.datagram(at: offset)
            dtlsDatagram(d, from: r.source, listener: li, now: now)
            offset += d.count
        }
    }

    mutating func dtlsDatagram(
        _ bytes: UnsafeMutableRawBufferPointer, from client: TransportAddress, listener li: Int, now: MonotonicTime
    ) {
        let fiveTuple = FiveTuple(client: client, server: datagram.listeners[li].local, transport: .dtls)
        counters.add(.bytesFromClients, bytes.count)
        // A session this datagram belongs to, or one a new ClientHello from
        // the same address and port would replace (RFC 6347 §4.2.8: a client
        // that restarted, e.g. a new socket on a reused port, while the
        // server still holds its old association).
        var replacing: UInt32? = nil
        if let slot = dtls.slot(of: fiveTuple) {
            guard dtls.isNewClientHello(UnsafeRawBufferPointer(bytes), for: slot) else {
                dtlsReceive(slot: slot, bytes, now: now)
                return
            }
            replacing = slot
        }
        // An unknown client: only a handshake record (content type 22) may
        // start a session; anything else is dropped without an answer.
        guard bytes.count > DTLSPart.recordHeader, bytes[0] == 22, let listening = dtls.listening else {
            counters.add(.dropsMalformed)
            return
        }
        dtls.setPeer(client)
        uturn_dtls_reset_bios(listening)
        _ = BIO_write(SSL_get_rbio(listening), bytes.baseAddress, Int32(bytes.count))
        ERR_clear_error()
        let verified = uturn_dtls_listen(listening, dtls.cookies)
        if verified != 1 {
            // A HelloVerifyRequest, or nothing (not a ClientHello).
            if BIO_ctrl_pending(SSL_get_wbio(listening)) > 0 { counters.add(.dtlsCookies) }
            let fd = datagram.listeners[li].fd
            if DTLSPart.drainCiphertext(listening, cipher: dtls.cipher, maxDatagram: SendBatcher.largeSize, { d in
                datagram.reply(fd: fd, to: client, d)
            }) > 0 {
                counters.add(.dropsNoSendOp)
            }
            if verified < 0 { ERR_clear_error() }
            uturn_dtls_reset_bios(listening)
            return
        }
        // The client proved it holds the address (a valid cookie): the old
        // association ends now (with its allocation, as when it closes), so
        // the new one does not count against the limits and its Allocate
        // is not a mismatch with the old 5-tuple.
        if let old = replacing {
            counters.add(.dtlsReplaced)
            log(.info, "DTLS session from \(client): a new handshake with a valid cookie replaces the open one")
            closeDTLS(old, why: "replaced by a new handshake from the same address")
        }
        if let why = dtls.refusal(for: client) {
            counters.add(.dtlsRefused)
            noteDTLSRefusal(client, "refused: \(why)", now: now)
            _ = dtls.renewListening()
            return
        }
        guard let slot = dtls.adoptListening(fiveTuple, listener: li, nowSeconds: nowSeconds) else {
            counters.add(.dtlsRefused)
            return
        }
        counters.add(.dtlsAccepted)
        // The ClientHello is buffered in the SSL: continue the handshake.
        dtlsReceive(slot: slot, nil, now: now)
    }

    /// Refusals and failures are logged like refused requests: at most once a second per worker.
    mutating func noteDTLSRefusal(_ client: TransportAddress, _ why: String, now: MonotonicTime) {
        if now.nanoseconds &- lastRefusalLog < 1_000_000_000 {
            suppressedRefusals += 1
            return
        }
        log(.warning, "DTLS session from \(client): \(why) on worker \(index)")
        lastRefusalLog = now.nanoseconds
        suppressedRefusals = 0
    }

    /// Feeds one datagram (nil: none, just advance) to session `slot`,
    /// handles every record it decrypts, and sends what OpenSSL wrote.
    mutating func dtlsReceive(slot: UInt32, _ bytes: UnsafeMutableRawBufferPointer?, now: MonotonicTime) {
        let s = dtls.sessions[Int(slot)]
        guard let ssl = s.ssl else { return }
        if s.failed {
            closeDTLS(slot, why: "closed with its DTLS session (write failed)")
            return
        }
        dtls.sessions[Int(slot)].lastSeenSeconds = nowSeconds
        if let bytes, let base = bytes.baseAddress {
            _ = BIO_write(SSL_get_rbio(ssl), base, Int32(bytes.count))
        }
        // A retransmitted ClientHello is checked against this client's cookie.
        if !s.established { dtls.setPeer(s.fiveTuple.client) }
        let plain = dtls.plain
        var closing = false
        ERR_clear_error()
        while true {
            if !dtls.sessions[Int(slot)].established {
                let status = SSL_do_handshake(ssl)
                if status != 1 {
                    let code = SSL_get_error(ssl, status)
                    if code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE {
                        counters.add(.dtlsFailures)
                        noteDTLSRefusal(s.fiveTuple.client, "handshake failed: \(TLSError.fromQueue("SSL_get_error \(code)"))", now: now)
                        closing = true
                    }
                    break
                }
                dtls.sessions[Int(slot)].established = true
            }
            var n = 0
            let status = SSL_read_ex(ssl, plain.baseAddress, plain.count, &n)
            if status == 1 {
                fromClient(
                    datagram: UnsafeMutableRawBufferPointer(rebasing: plain[0..<n]), fiveTuple: s.fiveTuple,
                    reply: .dtls(slot), buffer: nil, now: now)
                // Handling may not free the session, but stay safe if it did.
                if dtls.sessions[Int(slot)].ssl != ssl { return }
                continue
            }
            let code = SSL_get_error(ssl, status)
            if code == SSL_ERROR_ZERO_RETURN {
                closing = true  // close_notify from the client
            } else if code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE {
                counters.add(.dtlsFailures)
                noteDTLSRefusal(s.fiveTuple.client, "read failed: \(TLSError.fromQueue("SSL_get_error \(code)"))", now: now)
                closing = true
            }
            break
        }
        ERR_clear_error()
        // What was not a whole record is not kept: the next datagram starts afresh.
        uturn_dtls_reset_input(ssl)
        dtlsFlush(slot: slot)
        if closing { closeDTLS(slot, why: "closed with its DTLS session") }
    }

    /// Sends the ciphertext session `slot` has written, as datagrams on its listener.
    mutating func dtlsFlush(slot: UInt32) {
        let s = dtls.sessions[Int(slot)]
        guard let ssl = s.ssl else { return }
        let fd = datagram.listeners[Int(s.listener)].fd
        let client = s.fiveTuple.client
        var bytes = 0
        let dropped = DTLSPart.drainCiphertext(ssl, cipher: dtls.cipher, maxDatagram: SendBatcher.largeSize) { d in
            guard datagram.reply(fd: fd, to: client, d) else { return false }
            bytes += d.count
            return true
        }
        counters.add(.bytesToClients, bytes)
        if dropped > 0 { counters.add(.dropsNoSendOp, dropped) }
    }

    /// Encrypts `message` (one STUN message or ChannelData frame) as one
    /// record for session `slot` and sends it. False when the handshake is
    /// not complete or OpenSSL refused (the session is then closed).
    @discardableResult
    mutating func dtlsSend(slot: UInt32, _ message: UnsafeRawBufferPointer) -> Bool {
        let s = dtls.sessions[Int(slot)]
        guard let ssl = s.ssl, s.established, !s.failed, let base = message.baseAddress, !message.isEmpty,
            message.count <= DTLSPart.maxPlaintext
        else { return false }
        ERR_clear_error()
        var written = 0
        guard SSL_write_ex(ssl, base, message.count, &written) == 1 else {
            noteDTLSRefusal(s.fiveTuple.client, "write failed: \(TLSError.fromQueue("SSL_write"))", now: Worker.monotonicNow())
            counters.add(.dtlsFailures)
            // Closed at the next tick or datagram, not here: a send happens
            // while a request or peer datagram of its allocation is handled.
            dtls.sessions[Int(slot)].failed = true
            return false
        }
        dtlsFlush(slot: slot)
        return true
    }

    /// Peer data for a DTLS client: header (`prefix` or in place before
    /// `bytes`), payload and padding gathered into one record.
    mutating func dtlsForward(
        to client: FiveTuple, prefix: UnsafeRawPointer?, prefixLength: Int, bytes: UnsafeRawPointer, count: Int,
        padding: Int, allocation: AllocationID, payloadCount: Int
    ) {
        let total = prefixLength + count + padding
        guard let slot = dtls.slot(of: client) else {
            counters.add(.dropsNoRoute)
            return
        }
        // One record carries the whole frame; a bigger one cannot go.
        guard total <= DTLSPart.maxPlaintext, total <= dtls.gather.count else {
            counters.add(.dropsTooBig)
            return
        }
        let g = dtls.gather.baseAddress!
        if let prefix, prefixLength > 0 { g.copyMemory(from: prefix, byteCount: prefixLength) }
        (g + prefixLength).copyMemory(from: bytes, byteCount: count)
        (g + prefixLength + count).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
        turn.countToClient(allocation, bytes: payloadCount)
        if dtlsSend(slot: slot, UnsafeRawBufferPointer(start: g, count: total)) {
            counters.add(.packetsToClients)
        } else {
            counters.add(.dropsNoRoute)
        }
    }

    /// Frees session `slot` and deletes the allocation made over it (RFC
    /// 8656 §3.1: over TCP, TLS and DTLS an allocation lives as long as the
    /// connection or association it was made over), as `streamClosed` does
    /// for a TCP/TLS connection; `why` goes to the allocation's log line.
    /// `keepAllocation`: at shutdown only, where the allocations go anyway.
    mutating func closeDTLS(_ slot: UInt32, why: String, keepAllocation: Bool = false) {
        let fiveTuple = dtls.sessions[Int(slot)].fiveTuple
        guard dtls.sessions[Int(slot)].ssl != nil else { return }
        dtls.remove(slot)
        counters.add(.dtlsClosed)
        if !keepAllocation { endAllocationOfDTLS(fiveTuple, why: why) }
    }

    /// Deletes the allocation made over DTLS 5-tuple `fiveTuple`, if any
    /// (one moved to another 5-tuple by RFC 8016 mobility is not this one's).
    mutating func endAllocationOfDTLS(_ fiveTuple: FiveTuple, why: String) {
        guard let id = turn.allocation(for: fiveTuple), var removed = turn.removeAllocation(id) else { return }
        removeFastPath(&removed, now: Worker.monotonicNow())
        closeMovedSocket(of: removed.id)
        closeRelays(of: removed)
        stream.allocationGone(removed.id)
        counters.add(.allocationsDeleted)
        logRemoved(removed, why: why)
        if removed.relayTransport == .tcp { closeConnectionsOfRemovedAllocations() }
        datagram.cancelClosedRelays(&reactor)
    }

    /// Ends session `slot` from the server's side: close_notify when it is
    /// established, then `closeDTLS`.
    mutating func shutDownDTLS(_ slot: UInt32, why: String) {
        guard let ssl = dtls.sessions[Int(slot)].ssl else { return }
        if dtls.sessions[Int(slot)].established {
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
            dtlsFlush(slot: slot)
        }
        closeDTLS(slot, why: why)
    }

    /// Once a second: handshakes past `--tls-handshake-timeout` are dropped,
    /// others get their retransmission timer run; established sessions idle
    /// for `--tcp-idle-timeout` with no allocation get close_notify and are
    /// freed; the cookie secret rotates.
    mutating func dtlsTick(now: MonotonicTime) {
        guard dtls.capacity > 0 else { return }
        dtls.rotateCookies(nowSeconds: nowSeconds)
        guard dtls.count > 0 else { return }
        for i in 0..<dtls.capacity {
            let s = dtls.sessions[i]
            guard let ssl = s.ssl else { continue }
            let slot = UInt32(i)
            if s.failed {
                closeDTLS(slot, why: "closed with its DTLS session (write failed)")
            } else if !s.established {
                if nowSeconds &- s.startedSeconds >= dtls.handshakeSeconds {
                    counters.add(.dtlsTimeouts)
                    closeDTLS(slot, why: "closed with its DTLS session (handshake timed out)")
                } else {
                    dtls.setPeer(s.fiveTuple.client)
                    if uturn_dtls_handle_timeout(ssl) > 0 { dtlsFlush(slot: slot) }
                    ERR_clear_error()
                }
            } else if nowSeconds &- s.lastSeenSeconds >= dtls.idleSeconds && turn.allocation(for: s.fiveTuple) == nil {
                counters.add(.dtlsTimeouts)
                shutDownDTLS(slot, why: "closed with its DTLS session (idle)")
            }
        }
    }

    /// At stop: close_notify to every established client, then free all.
    mutating func closeAllDTLS() {
        for i in 0..<dtls.capacity {
            guard let ssl = dtls.sessions[i].ssl else { continue }
            if dtls.sessions[i].established {
                _ = SSL_shutdown(ssl)
                ERR_clear_error()
                dtlsFlush(slot: UInt32(i))
            }
            closeDTLS(UInt32(i), why: "stopping", keepAllocation: true)
        }
    }
}
