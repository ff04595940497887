import CCrypto
import STUN

/// Result of the long-term credential check (RFC 8489 §9.2.4).
enum AuthStep {
    case authenticated(AuthContext)
    /// The response (401, 438 or 400) is written; its length.
    case rejected(Int)
}

extension TURNServer {
    /// Checks a request's long-term credentials, writing the rejection when
    /// they fail.
    func authenticate(
        _ request: STUNMessage, client: TransportAddress, now: MonotonicTime, unixTime: Int64,
        into out: UnsafeMutableRawBufferPointer
    ) -> AuthStep {
        let hasSHA1 = request.messageIntegrity != nil
        let hasSHA256 = request.messageIntegritySHA256 != nil
        guard hasSHA1 || hasSHA256 else { return .rejected(challengeResponse(401, to: request, client: client, now: now, into: out)) }
        guard let nonce = request.nonceBytes, request.realmBytes != nil,
            request.usernameBytes != nil || request.userHash != nil
        else {
            return .rejected(errorResponse(400, to: request, auth: nil, into: out))
        }
        let features: SecurityFeatures
        switch configuration.nonces.check(nonce, client: client, now: now) {
        case .stale: return .rejected(challengeResponse(438, to: request, client: client, now: now, into: out))
        case .valid(let f): features = f
        }

        // Password algorithm negotiation (only when our nonce offered it).
        var algorithm = PasswordAlgorithm.md5
        if features.contains(.passwordAlgorithms) {
            let offered = request.passwordAlgorithmsBytes
            let chosen = request.passwordAlgorithm
            if offered != nil || chosen != nil {
                guard let offered, let chosen else { return .rejected(errorResponse(400, to: request, auth: nil, into: out)) }
                var ours = TURNServer.offeredAlgorithms
                let echoed = withUnsafeBytes(of: &ours) { o in
                    offered.count == o.count && uturn_ct_equal(offered.baseAddress, o.baseAddress, o.count) == 1
                }
                guard echoed else { return .rejected(errorResponse(400, to: request, auth: nil, into: out)) }
                switch chosen.id {
                case .md5: algorithm = .md5
                case .sha256: algorithm = .sha256
                default: return .rejected(errorResponse(400, to: request, auth: nil, into: out))
                }
            }
        }

        // USERNAME, or USERHASH when the nonce announced username anonymity.
        var username: String
        if let name = request.username {
            username = name
        } else if let hash = request.userHash, features.contains(.usernameAnonymity),
            let name = configuration.credentials.username(forUserHash: hash)
        {
            username = name
        } else {
            return .rejected(challengeResponse(401, to: request, client: client, now: now, into: out))
        }

        // The strongest integrity present is the one checked (and used back).
        let useSHA256 = hasSHA256
        var accepted: IntegrityKey?
        let outcome = username.withUTF8 { u in
            configuration.credentials.authenticate(
                username: UnsafeRawBufferPointer(u), algorithm: algorithm, unixTime: unixTime
            ) { key in
                guard let ik = key.integrityKey else { return false }
                let ok = useSHA256 ? request.verifyMessageIntegritySHA256(key: ik) : request.verifyMessageIntegrity(key: ik)
                if ok { accepted = ik }
                return ok
            }
        }
        guard case .accepted = outcome, let key = accepted else { return .rejected(challengeResponse(401, to: request, client: client, now: now, into: out)) }
        return .authenticated(AuthContext(key: key, sha256: useSHA256, username: username))
    }
}

extension TURNServer {
    /// 401 or 438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS; unsigned.
    func challengeResponse(
        _ code: Int, to request: STUNMessage, client: TransportAddress, now: MonotonicTime,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int {
        do throws(STUNError) {
            var enc = try beginResponse(to: request, error: true, into: out)
            try enc.appendErrorCode(code, reason: reasonPhrase(code))
            try appendChallenge(&enc, client: client, now: now)
            return try finish(&enc, request: request, auth: nil)
        } catch {
            return 0
        }
    }
}

extension LongTermKey {
    /// The same bytes as STUN's integrity key type.
    var integrityKey: IntegrityKey? {
        withUnsafeBytes { raw in try? IntegrityKey(bytes: raw) }
    }
}
