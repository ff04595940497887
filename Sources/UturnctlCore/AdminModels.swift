import Foundation

/// The admin API's documents as uturnctl reads them (docs/administration.md).
public struct Session: Codable, Sendable, Equatable {
    public struct Permission: Codable, Sendable, Equatable {
        public var peer: String
        public var expires_in: Int
    }
    public struct Channel: Codable, Sendable, Equatable {
        public var number: Int
        public var peer: String
        public var expires_in: Int
    }
    public struct Traffic: Codable, Sendable, Equatable {
        public var packets: UInt64
        public var bytes: UInt64
    }
    public var id: String
    public var worker: Int
    public var user: String
    public var realm: String
    public var transport: String
    public var client: String
    public var server: String
    public var relay_transport: String
    public var relayed: [String]
    public var permissions: [Permission]
    public var channels: [Channel]
    public var age_seconds: Int
    public var expires_in: Int
    public var to_peer: Traffic
    public var to_client: Traffic
}

/// `GET /v1/sessions` (key `sessions`) and a disconnect (key `ended`).
public struct SessionList: Codable, Sendable, Equatable {
    public var sessions: [Session]
    public var workers_missing: [Int]

    enum CodingKeys: String, CodingKey { case sessions, ended, workers_missing }

    public init(sessions: [Session], workers_missing: [Int]) {
        self.sessions = sessions
        self.workers_missing = workers_missing
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sessions = try c.decodeIfPresent([Session].self, forKey: .sessions) ?? c.decode([Session].self, forKey: .ended)
        workers_missing = try c.decode([Int].self, forKey: .workers_missing)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sessions, forKey: .sessions)
        try c.encode(workers_missing, forKey: .workers_missing)
    }
}

/// `GET /v1/info`.
public struct ServerInfo: Codable, Sendable, Equatable {
    public var version: String
    public var backend: String
    public var workers: Int
    public var uptime_seconds: Int
    public var draining: Bool
    public var allocations: UInt64
    public var realm: String
    public var config: [String]
}

/// Decodes one of the documents above from an answer's body.
public func decodeAdmin<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws(AdminClientError) -> T {
    do { return try JSONDecoder().decode(type, from: Data(body)) } catch {
        throw AdminClientError("unexpected answer from the admin API (\(error)): \(String(decoding: body.prefix(200), as: UTF8.self))")
    }
}
