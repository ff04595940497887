import URing

// Every kind of operation a worker puts in flight, numbered in this one
// place. A completion's user_data carries (kind, generation, slot); the
// worker's dispatch routes it to the part that owns the kind. What slot and
// generation mean is said per kind. 0xF0...0xFF belong to URing (the waker's
// read, feature probes).
extension UserData.Kind {
    // Datagram (Datagram/): UDP listeners and relay sockets.

    /// A receive on a client-facing UDP listener; slot = listener index.
    static var listenerReceive: UserData.Kind { UserData.Kind(rawValue: 1) }
    /// A receive on a relay socket; slot, generation = the relay slot's.
    static var relayReceive: UserData.Kind { UserData.Kind(rawValue: 2) }
    /// A SENDMSG of the send batcher; slot = its send operation.
    static var send: UserData.Kind { UserData.Kind(rawValue: 3) }

    /// Cancels and other bookkeeping whose completion needs nothing.
    static var housekeeping: UserData.Kind { UserData.Kind(rawValue: 4) }

    // Stream (Stream/): TCP and TLS client connections.

    /// A multishot ACCEPT on a stream listener; slot = stream listener index.
    static var streamAccept: UserData.Kind { UserData.Kind(rawValue: 5) }
    /// A RECV on a connection; slot, generation = the connection's.
    static var streamReceive: UserData.Kind { UserData.Kind(rawValue: 6) }
    /// A SEND on a connection; slot, generation = the connection's.
    static var streamSend: UserData.Kind { UserData.Kind(rawValue: 7) }

    // TCPRelay (TCPRelay/): RFC 6062.

    /// A multishot ACCEPT on a TCP relay listener; slot, generation = the relay slot's.
    static var relayAccept: UserData.Kind { UserData.Kind(rawValue: 8) }
    /// A CONNECT to a peer; slot, generation = the connection's.
    static var streamConnect: UserData.Kind { UserData.Kind(rawValue: 9) }

    // Datagram again: RFC 8016 moves across workers (Datagram/MovedSockets.swift).

    /// A receive on a client-facing socket connected to a moved client;
    /// slot, generation = the moved-socket slot's.
    static var movedReceive: UserData.Kind { UserData.Kind(rawValue: 10) }
}

extension UserData {
    /// The user_data of a cancel (nothing to do when it completes).
    static var housekeeping: UserData { UserData(kind: .housekeeping, slot: 0) }
}
