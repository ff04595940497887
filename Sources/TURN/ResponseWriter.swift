import STUN

/// How a response is signed: the key and integrity flavour of the request
/// it answers (RFC 8489 §9.2.4: a response carries the integrity attribute
/// the request used).
struct AuthContext {
    var key: IntegrityKey
    var sha256: Bool
    var username: String
}

/// Standard reason phrases for the error codes this server sends.
func reasonPhrase(_ code: Int) -> String {
    switch code {
    case 300: "Try Alternate"
    case 400: "Bad Request"
    case 401: "Unauthorized"
    case 403: "Forbidden"
    case 405: "Mobility Forbidden"  // RFC 8016 §4
    case 420: "Unknown Attribute"
    case 437: "Allocation Mismatch"
    case 438: "Stale Nonce"
    case 440: "Address Family not Supported"
    case 441: "Wrong Credentials"
    case 442: "Unsupported Transport Protocol"
    case 443: "Peer Address Family Mismatch"
    case 446: "Connection Already Exists"  // RFC 6062 §6.3
    case 447: "Connection Timeout or Failure"  // RFC 6062 §6.3
    case 486: "Allocation Quota Reached"
    case 508: "Insufficient Capacity"
    default: "Server Error"
    }
}

extension TURNServer {
    /// Starts a response to `request` in `out`.
    func beginResponse(to request: STUNMessage, error: Bool, into out: UnsafeMutableRawBufferPointer) throws(STUNError)
        -> STUNEncoder
    {
        try STUNEncoder(
            into: out, method: request.method, class: error ? .errorResponse : .successResponse,
            transactionID: request.transactionID)
    }

    /// Adds SOFTWARE, integrity (when authenticated) and FINGERPRINT (when the
    /// request had one); returns the response length.
    func finish(_ enc: inout STUNEncoder, request: STUNMessage, auth: AuthContext?) throws(STUNError) -> Int {
        try finish(&enc, key: auth?.key, sha256: auth?.sha256 ?? false, fingerprint: request.contains(.fingerprint))
    }

    /// `finish` from what was kept of a request answered later (Connect).
    func finish(
        _ enc: inout STUNEncoder, key: IntegrityKey?, sha256: Bool, fingerprint: Bool
    ) throws(STUNError) -> Int {
        if let software = configuration.software { try enc.append(.software, utf8: software) }
        if let key {
            if sha256 {
                try enc.appendMessageIntegritySHA256(key: key)
            } else {
                try enc.appendMessageIntegrity(key: key)
            }
        }
        if fingerprint { try enc.appendFingerprint() }
        return enc.count
    }

    /// A complete error response; `extra` adds attributes after ERROR-CODE.
    func errorResponse(
        _ code: Int, to request: STUNMessage, auth: AuthContext?, into out: UnsafeMutableRawBufferPointer,
        extra: (inout STUNEncoder) throws(STUNError) -> Void = { _ in }
    ) -> Int {
        do throws(STUNError) {
            var enc = try beginResponse(to: request, error: true, into: out)
            try enc.appendErrorCode(code, reason: reasonPhrase(code))
            try extra(&enc)
            return try finish(&enc, request: request, auth: auth)
        } catch {
            return 0
        }
    }

    /// A complete success response; `body` adds the method's attributes.
    func successResponse(
        to request: STUNMessage, auth: AuthContext?, into out: UnsafeMutableRawBufferPointer,
        body: (inout STUNEncoder) throws(STUNError) -> Void = { _ in }
    ) -> Int {
        do throws(STUNError) {
            var enc = try beginResponse(to: request, error: false, into: out)
            try body(&enc)
            return try finish(&enc, request: request, auth: auth)
        } catch {
            return 0
        }
    }

    /// The PASSWORD-ALGORITHMS value this server offers: SHA-256 then MD5,
    /// no parameters. Requests must echo it byte for byte (RFC 8489 §9.2.4).
    static let offeredAlgorithms: (UInt32, UInt32) = (UInt32(0x0002_0000).bigEndian, UInt32(0x0001_0000).bigEndian)

    /// REALM, a fresh NONCE and (with SHA-256 on) PASSWORD-ALGORITHMS: the
    /// challenge part of 401 and 438 responses.
    func appendChallenge(_ enc: inout STUNEncoder, client: TransportAddress, now: MonotonicTime) throws(STUNError) {
        try enc.append(.realm, utf8: configuration.credentials.realm)
        var nonce = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let features = configuration.securityFeatures
        let codec = configuration.nonces
        try withUnsafeMutableBytes(of: &nonce) { (buf) throws(STUNError) in
            let n = codec.encode(into: buf, client: client, features: features, now: now)
            try enc.append(.nonce, bytes: UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
        if configuration.offerSHA256 {
            var algs = TURNServer.offeredAlgorithms
            try withUnsafeBytes(of: &algs) { (b) throws(STUNError) in try enc.append(.passwordAlgorithms, bytes: b) }
        }
    }
}

extension STUNEncoder {
    /// An attribute whose value is a byte array (control path: mobility tickets).
    mutating func appendBytes(_ type: STUNAttributeType, _ value: [UInt8]) throws(STUNError) {
        var failure: STUNError?
        value.withUnsafeBytes { b in
            do throws(STUNError) {
                try append(type, bytes: b)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }
}
