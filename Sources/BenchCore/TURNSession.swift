import STUN
import URing

#if canImport(Glibc)
import Glibc
#endif

extension SocketAddress {
    init(_ t: TransportAddress) {
        if t.ip.family == .v4 {
            self.init(v4: t.ip.v4, port: t.port)
        } else {
            self.init(v6High: t.ip.high, v6Low: t.ip.low, port: t.port)
        }
    }

    var transportAddress: TransportAddress {
        TransportAddress(
            ip: family == .v4 ? IPAddress(v4: UInt32(truncatingIfNeeded: low)) : IPAddress(v6High: high, v6Low: low),
            port: port)
    }
}

public struct TURNError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// A response copied out of the receive buffer.
struct TURNResponse {
    var isSuccess: Bool
    var errorCode: Int?
    var realm: String?
    var nonce: String?
    var relayed: TransportAddress?
    var lifetime: UInt32?
}

/// One client 5-tuple to the server, driven with blocking request/response
/// transactions (the control path: Allocate with the long-term credential
/// dance, Refresh, ChannelBind). The data path later takes over `socket` on
/// the ring.
final class TURNSession {
    let socket: UDPSocket
    let server: SocketAddress
    let user: String
    let password: String
    var realm: String?
    var nonce: String?
    var key: IntegrityKey?
    var relayed: TransportAddress?
    let channel: UInt16 = 0x4000
    fileprivate var sendBuffer = [UInt8](repeating: 0, count: 1500)
    private var receiveBuffer = [UInt8](repeating: 0, count: 2048)
    /// Requests sent and retransmitted, responses with unexpected content.
    var retransmits = 0

    /// `local`: the address to bind (default: the wildcard of the server's family, any port).
    init(server: SocketAddress, user: String, password: String, realm: String?, local: SocketAddress? = nil) throws {
        self.server = server
        self.user = user
        self.password = password
        self.realm = realm
        let wildcard = SocketAddress(server.family == .v4 ? "0.0.0.0" : "::", port: 0)!
        socket = try UDPSocket.bound(to: local ?? wildcard)
        try socket.setReceiveTimeout(.milliseconds(250))
        try? socket.setReceiveBufferSize(4 << 20)
        try? socket.setSendBufferSize(4 << 20)
    }

    func close() { socket.close() }

    /// Sends a request built by `extras` (with credentials once known),
    /// retransmitting on silence and following 401/438 with the new realm and
    /// nonce. Returns the final response.
    func transact(
        _ method: STUNMethod, _ extras: (inout STUNEncoder) throws(STUNError) -> Void
    ) throws -> TURNResponse {
        var authRounds = 0
        while true {
            let tid = TransactionID.random()
            let length = try build(method, tid, extras)
            guard let response = try exchange(length: length, tid: tid) else {
                throw TURNError("\(method) to \(server): no response")
            }
            if let code = response.errorCode, code == 401 || code == 438, authRounds < 3 {
                authRounds += 1
                if let r = response.realm, r != realm || key == nil {
                    realm = r
                    key = try IntegrityKey.longTerm(username: user, realm: r, password: password)
                }
                if let n = response.nonce { nonce = n }
                guard key != nil, nonce != nil else { throw TURNError("\(code) without REALM/NONCE") }
                continue
            }
            return response
        }
    }

    private func build(
        _ method: STUNMethod, _ tid: TransactionID, _ extras: (inout STUNEncoder) throws(STUNError) -> Void
    ) throws -> Int {
        let key = key
        let realm = realm
        let nonce = nonce
        let user = user
        return try sendBuffer.withUnsafeMutableBytes { buf throws -> Int in
            var e = try STUNEncoder(into: buf, method: method, class: .request, transactionID: tid)
            try extras(&e)
            if let key, let realm, let nonce {
                try e.append(.username, utf8: user)
                try e.append(.realm, utf8: realm)
                try e.append(.nonce, utf8: nonce)
                try e.appendMessageIntegrity(key: key)
            }
            try e.appendFingerprint()
            return e.count
        }
    }

    fileprivate func exchange(length: Int, tid: TransactionID) throws -> TURNResponse? {
        for attempt in 0..<4 {
            if attempt > 0 { retransmits += 1 }
            _ = try sendBuffer.withUnsafeBytes { b in
                try socket.send(UnsafeRawBufferPointer(rebasing: b[0..<length]), to: server)
            }
            // Read until our response or a timeout (stray data-path packets are skipped).
            while true {
                let got = try receiveBuffer.withUnsafeMutableBytes { b in try socket.receive(into: b) }
                guard let (n, _) = got else { break }
                let parsed: TURNResponse? = receiveBuffer.withUnsafeBytes { b in
                    guard let m = try? STUNMessage(parsing: UnsafeRawBufferPointer(rebasing: b[0..<n])),
                        m.transactionID == tid, m.messageClass == .successResponse || m.messageClass == .errorResponse
                    else { return nil }
                    return TURNResponse(
                        isSuccess: m.messageClass == .successResponse, errorCode: m.errorCode?.code,
                        realm: m.realm, nonce: m.nonce, relayed: m.xorRelayedAddress, lifetime: m.lifetime)
                }
                if let parsed { return parsed }
            }
        }
        return nil
    }

    func allocate(lifetime: UInt32? = nil) throws {
        let r = try transact(.allocate) { (e: inout STUNEncoder) throws(STUNError) in
            try e.appendRequestedTransport(17)
            if let lifetime { try e.appendLifetime(lifetime) }
        }
        guard r.isSuccess else { throw TURNError("Allocate failed: \(r.errorCode.map(String.init) ?? "?")") }
        relayed = r.relayed
    }

    func refresh(lifetime: UInt32) throws {
        let r = try transact(.refresh) { (e: inout STUNEncoder) throws(STUNError) in try e.appendLifetime(lifetime) }
        guard r.isSuccess else {
            throw TURNError("Refresh(\(lifetime)) failed: \(r.errorCode.map(String.init) ?? "?")")
        }
    }

    func channelBind(peer: TransportAddress) throws {
        let channel = channel
        let r = try transact(.channelBind) { (e: inout STUNEncoder) throws(STUNError) in
            try e.appendChannelNumber(channel)
            try e.append(.xorPeerAddress, xorAddress: peer)
        }
        guard r.isSuccess else { throw TURNError("ChannelBind failed: \(r.errorCode.map(String.init) ?? "?")") }
    }
}

extension TURNSession {
    /// Sends one Allocate without credentials and keeps the REALM and NONCE
    /// of the 401 it must get: what a client learns before it signs, and what
    /// `invalid`'s wrong-integrity packets need to reach the integrity check.
    func challenge() throws -> (realm: String, nonce: String) {
        let tid = TransactionID.random()
        let length = try sendBuffer.withUnsafeMutableBytes { buf throws -> Int in
            var e = try STUNEncoder(into: buf, method: .allocate, class: .request, transactionID: tid)
            try e.appendRequestedTransport(17)
            try e.appendFingerprint()
            return e.count
        }
        guard let r = try exchange(length: length, tid: tid) else {
            throw TURNError("Allocate to \(server): no response")
        }
        guard r.errorCode == 401, let realm = r.realm, let nonce = r.nonce else {
            throw TURNError(
                "unauthenticated Allocate: expected 401 with REALM and NONCE, got \(r.errorCode.map(String.init) ?? "success")"
            )
        }
        return (realm, nonce)
    }
}
