import STUN

extension TURNServer {
    /// Handles one STUN message from a client (request or Send indication).
    ///
    /// - Parameters:
    ///   - packet: the datagram, starting at the STUN header.
    ///   - fiveTuple: client address, the listening address it arrived on, transport.
    ///   - now: monotonic clock reading; `unixTime`: wall clock seconds (REST API expiry).
    ///   - out: where the response is written (548 bytes is always enough).
    ///   - relays: the engine's relay socket provider.
    /// - Returns: the response length (0: send nothing) and the effect to apply
    ///   (for RFC 6062 requests `.tcpRelay`; see `TCPRelayHandlers.swift` for
    ///   the engine's side of TCP relaying).
    public mutating func handleSTUN<Relays: RelayPortProvider & ~Copyable>(
        _ packet: UnsafeRawBufferPointer, from fiveTuple: FiveTuple, now: MonotonicTime, unixTime: Int64,
        response out: UnsafeMutableRawBufferPointer, relays: inout Relays
    ) -> STUNOutcome {
        let request: STUNMessage
        do throws(STUNError) {
            request = try STUNMessage(parsing: packet)
        } catch {
            let n = badRequestForUnparsable(packet, into: out)
            if n > 0 && isRateLimited(fiveTuple) {
                guard sourceLimiter.mayRefuse(fiveTuple.client.ip, now: now) else {
                    return STUNOutcome(responseLength: 0, effect: .dropped(.rateLimitedMalformed))
                }
                sourceLimiter.chargeRefusal(fiveTuple.client.ip, now: now)
            }
            return STUNOutcome(responseLength: n, effect: .dropped(.malformed))
        }
        // RFC 8489 §6.3: a message whose FINGERPRINT does not match is
        // silently discarded (it is not STUN, or it was damaged).
        if request.fingerprint != nil && !request.verifyFingerprint() {
            return STUNOutcome(responseLength: 0, effect: .dropped(.malformed))
        }
        switch request.messageClass {
        case .request: break
        case .indication:
            if configuration.stunOnly { return STUNOutcome(responseLength: 0, effect: .dropped(.serviceOff)) }
            if request.method == .send { return handleSendIndication(request, from: fiveTuple, now: now) }
            return STUNOutcome(responseLength: 0, effect: .dropped(.notARequest))
        case .successResponse, .errorResponse:
            return STUNOutcome(responseLength: 0, effect: .dropped(.notARequest))
        }
        if request.method == .binding {
            if isRateLimited(fiveTuple) && !sourceLimiter.admitBinding(fiveTuple.client.ip, now: now) {
                return STUNOutcome(responseLength: 0, effect: .dropped(.rateLimitedBinding))
            }
            return handleBinding(request, from: fiveTuple, now: now, unixTime: unixTime, into: out)
        }
        if configuration.stunOnly { return STUNOutcome(responseLength: 0, effect: .dropped(.serviceOff)) }
        // A source that has used up its refusals gets no answer and costs no
        // HMAC, unless the request comes over an allocation's own 5-tuple.
        let limited = isRateLimited(fiveTuple)
        if limited && !sourceLimiter.mayRefuse(fiveTuple.client.ip, now: now) {
            let signed = request.messageIntegrity != nil || request.messageIntegritySHA256 != nil
            return STUNOutcome(
                responseLength: 0, effect: .dropped(signed ? .rateLimitedCredentials : .rateLimitedUnauthenticated))
        }
        let method = request.method
        // RFC 6062's requests exist only with TCP relaying on; otherwise they
        // are unknown methods, as for a server without it.
        let tcpMethod = configuration.tcpRelay && (method == .connect || method == .connectionBind)
        guard method == .allocate || method == .refresh || method == .createPermission || method == .channelBind
            || tcpMethod
        else {
            if limited { sourceLimiter.chargeRefusal(fiveTuple.client.ip, now: now) }
            return STUNOutcome(responseLength: errorResponse(400, to: request, auth: nil, into: out), effect: .none)
        }
        if let n = cache.lookup(fiveTuple, request.transactionID, method: method, now: now, into: out) {
            return STUNOutcome(responseLength: n, effect: .none)
        }
        let auth: AuthContext
        switch authenticate(request, client: fiveTuple.client, now: now, unixTime: unixTime, into: out) {
        case .rejected(let n):
            if limited { sourceLimiter.chargeRefusal(fiveTuple.client.ip, now: now) }
            return STUNOutcome(responseLength: n, effect: .none)
        case .authenticated(let a): auth = a
        }
        var outcome: STUNOutcome
        let unknown = request.unknownComprehensionRequired
        if !unknown.isEmpty {
            let n = errorResponse(420, to: request, auth: auth, into: out) { (enc) throws(STUNError) in
                try enc.appendUnknownAttributes(unknown)
            }
            outcome = STUNOutcome(responseLength: n, effect: .none)
        } else if method == .allocate || method == .refresh, request.mobilityTicket != nil,
            !mobilityAllowed(for: fiveTuple)
        {
            // RFC 8016 §3.1: mobility off (or not UDP) is 405, not silence.
            outcome = STUNOutcome(responseLength: errorResponse(405, to: request, auth: auth, into: out), effect: .none)
        } else if method == .allocate {
            outcome = handleAllocate(request, auth: auth, from: fiveTuple, now: now, into: out, relays: &relays)
        } else if method == .connectionBind {
            // Comes on a connection of its own, with no allocation (RFC 6062 §4.4).
            outcome = handleConnectionBind(request, auth: auth, from: fiveTuple, now: now, into: out)
        } else if let id = tables.allocation(for: fiveTuple) {
            if owners[Int(id.slot)].username != auth.username {
                outcome = STUNOutcome(responseLength: errorResponse(441, to: request, auth: auth, into: out), effect: .none)
            } else if configuration.checkOriginConsistency
                && !OriginCheck.isConsistent(request, with: owners[Int(id.slot)].origin)
            {
                // coturn answers an ORIGIN other than the allocation's with 441.
                outcome = STUNOutcome(responseLength: errorResponse(441, to: request, auth: auth, into: out), effect: .none)
            } else if method == .refresh {
                outcome = handleRefresh(request, id: id, auth: auth, now: now, into: out, relays: &relays)
            } else if method == .createPermission {
                outcome = handleCreatePermission(request, id: id, auth: auth, now: now, into: out)
            } else if method == .connect {
                outcome = handleConnect(request, id: id, auth: auth, now: now, into: out)
            } else {
                outcome = handleChannelBind(request, id: id, auth: auth, now: now, into: out)
            }
        } else if method == .refresh, let ticket = request.mobilityTicket {
            outcome = handleMobilityRefresh(
                request, ticket: ticket, auth: auth, from: fiveTuple, now: now, into: out, relays: &relays)
        } else {
            outcome = STUNOutcome(responseLength: errorResponse(437, to: request, auth: auth, into: out), effect: .none)
        }
        // Only Allocate and Refresh need the same answer on a retransmission
        // (a second allocation, or 437 after a delete, would be wrong).
        // Connect and ConnectionBind are not cached: both only come over TCP
        // or TLS (RFC 6062 §5.2, §5.4), where clients do not retransmit
        // (RFC 8489 §6.2.2), and Connect's answer is not known yet.
        if outcome.responseLength > 0 && (method == .allocate || method == .refresh) {
            cache.store(
                fiveTuple, request.transactionID, method: method,
                response: UnsafeRawBufferPointer(rebasing: out[0..<outcome.responseLength]), now: now)
        }
        return outcome
    }

    /// After a request from `fiveTuple` was dropped for `reason` (one of the
    /// `rateLimited` reasons): nanoseconds the kernel source filter may drop
    /// that 5-tuple's datagrams before they reach user space
    /// (`SourceRateLimiter.blockNanoseconds`); 0: do not block (another
    /// reason, the limits are off, or the 5-tuple has an allocation).
    public mutating func sourceBlockNanoseconds(
        after reason: DropReason, from fiveTuple: FiveTuple, now: MonotonicTime
    ) -> UInt64 {
        guard isRateLimited(fiveTuple) else { return 0 }
        switch reason {
        case .rateLimitedBinding:
            return sourceLimiter.blockNanoseconds(fiveTuple.client.ip, binding: true, now: now)
        case .rateLimitedUnauthenticated, .rateLimitedCredentials, .rateLimitedMalformed:
            return sourceLimiter.blockNanoseconds(fiveTuple.client.ip, binding: false, now: now)
        default:
            return 0
        }
    }

    /// After a datagram from `fiveTuple` was dropped with no answer (not
    /// ChannelData of a bound channel, not a message anyone answers): charges
    /// it to the source's bucket for such datagrams and returns how long the
    /// kernel source filter may drop that 5-tuple's datagrams that are not
    /// STUN (`SourceRateLimiter.chargeUnanswered`); 0: do not block (under
    /// the limit, the limits are off, or the 5-tuple has an allocation).
    public mutating func unansweredBlockNanoseconds(from fiveTuple: FiveTuple, now: MonotonicTime) -> UInt64 {
        guard isRateLimited(fiveTuple) else { return 0 }
        return sourceLimiter.chargeUnanswered(fiveTuple.client.ip, now: now)
    }

    /// Whether the per-source limits apply: they are on, and the 5-tuple has
    /// no allocation (an allocation's own traffic is never limited).
    @inline(__always)
    func isRateLimited(_ fiveTuple: FiveTuple) -> Bool {
        !configuration.sourceLimits.isOff && tables.allocation(for: fiveTuple) == nil
    }

    /// Binding (RFC 8489 §10): the client's address as the server sees it.
    /// It needs no credentials unless `--secure-stun`; `--no-stun` drops it.
    func handleBinding(
        _ request: STUNMessage, from fiveTuple: FiveTuple, now: MonotonicTime, unixTime: Int64,
        into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        guard configuration.answersBinding else { return STUNOutcome(responseLength: 0, effect: .dropped(.serviceOff)) }
        var auth: AuthContext?
        if configuration.authenticatesBinding {
            switch authenticate(request, client: fiveTuple.client, now: now, unixTime: unixTime, into: out) {
            case .rejected(let n): return STUNOutcome(responseLength: n, effect: .none)
            case .authenticated(let a): auth = a
            }
        }
        let nat = configuration.natDiscovery
        guard fiveTuple.transport == .udp, let other = nat.otherAddress(of: fiveTuple.server) else {
            return plainBinding(request, from: fiveTuple, auth: auth, into: out)
        }
        return natDiscoveryBinding(request, from: fiveTuple, other: other, auth: auth, into: out)
    }

    /// Binding without RFC 5780: XOR-MAPPED-ADDRESS. A CHANGE-REQUEST asks
    /// for what this server cannot do, so it gets 420 (RFC 5780 §6.1).
    func plainBinding(
        _ request: STUNMessage, from fiveTuple: FiveTuple, auth: AuthContext?, into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        if request.attributes.contains(where: { $0.type == .changeRequest }) {
            let n = errorResponse(420, to: request, auth: auth, into: out) { (enc) throws(STUNError) in
                var list = UnknownAttributeList()
                list.insert(.changeRequest)
                try enc.appendUnknownAttributes(list)
            }
            return STUNOutcome(responseLength: n, effect: .none)
        }
        let n = successResponse(to: request, auth: auth, into: out) { (enc) throws(STUNError) in
            try enc.append(.xorMappedAddress, xorAddress: fiveTuple.client)
        }
        return STUNOutcome(responseLength: n, effect: .none)
    }

    /// Binding on one of the RFC 5780 sockets (§6.1): XOR-MAPPED-ADDRESS,
    /// RESPONSE-ORIGIN (where the answer leaves from) and OTHER-ADDRESS;
    /// CHANGE-REQUEST picks the socket it leaves from, RESPONSE-PORT the
    /// client port it goes to, PADDING pads it to about a 1500-byte packet
    /// (400 together with RESPONSE-PORT).
    func natDiscoveryBinding(
        _ request: STUNMessage, from fiveTuple: FiveTuple, other: TransportAddress, auth: AuthContext?,
        into out: UnsafeMutableRawBufferPointer
    ) -> STUNOutcome {
        let asked: NATDiscoveryRequest
        do throws(STUNError) {
            asked = try NATDiscoveryRequest(request)
        } catch {
            return STUNOutcome(responseLength: errorResponse(400, to: request, auth: auth, into: out), effect: .none)
        }
        if asked.padding != nil && asked.responsePort != nil {
            return STUNOutcome(responseLength: errorResponse(400, to: request, auth: auth, into: out), effect: .none)
        }
        let local = fiveTuple.server
        let source =
            configuration.natDiscovery.source(for: local, changeIP: asked.changeIP, changePort: asked.changePort)
            ?? local
        let n = successResponse(to: request, auth: auth, into: out) { (enc) throws(STUNError) in
            try enc.append(.xorMappedAddress, xorAddress: fiveTuple.client)
            // RFC 3489-era discovery clients read MAPPED-ADDRESS.
            try enc.append(.mappedAddress, address: fiveTuple.client)
            try enc.append(.responseOrigin, address: source)
            try enc.append(.otherAddress, address: other)
            if asked.padding != nil {
                // 1472: a 1500-byte IPv4 packet's UDP payload; room is kept
                // for MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT after it.
                let room = 1472 - enc.count - 4 - 36 - 8
                try enc.appendPadding(length: max(0, room) & ~3)
            }
        }
        var outcome = STUNOutcome(responseLength: n, effect: .none)
        if source != local { outcome.responseSource = source }
        if let port = asked.responsePort { outcome.responseDestination = TransportAddress(ip: fiveTuple.client.ip, port: port) }
        return outcome
    }

    /// A request too broken to parse still gets 400 when its header is sound
    /// enough to answer (RFC 8489 §6.3.1); anything else is dropped.
    func badRequestForUnparsable(_ packet: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        guard packet.count >= STUNHeader.size, packet[0] & 0xC0 == 0,
            packet.loadUnaligned(fromByteOffset: 4, as: UInt32.self) == STUNHeader.magicCookie.bigEndian
        else { return 0 }
        let type = STUNMessageType(rawValue: UInt16(packet[0]) << 8 | UInt16(packet[1]))
        guard type.messageClass == .request else { return 0 }
        // What --stun-only or --no-stun ignores gets no answer, broken or not.
        let isBinding = type.method == .binding
        if isBinding ? !configuration.answersBinding : configuration.stunOnly { return 0 }
        do throws(STUNError) {
            var enc = try STUNEncoder(
                into: out, method: type.method, class: .errorResponse,
                transactionID: TransactionID(loadingFrom: packet.baseAddress! + 8))
            try enc.appendErrorCode(400, reason: reasonPhrase(400))
            if let software = configuration.software { try enc.append(.software, utf8: software) }
            return enc.count
        } catch {
            return 0
        }
    }

    /// Families of the relays an allocation holds.
    func hasRelay(_ id: AllocationID, family: IPAddress.Family) -> Bool {
        guard let r = tables.relays(of: id) else { return false }
        return family == .v4 ? r.v4 != nil : r.v6 != nil
    }
}
