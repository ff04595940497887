import STUN
import TURN

/// A client connection moving to the worker that owns the CONNECTION-ID
/// of its ConnectionBind (see `handOffIfForeign`).
struct StreamHandoff: @unchecked Sendable {
    var fd: Int32
    var fiveTuple: FiveTuple
    /// Moves with the connection: the receiving worker owns it from now on.
    var tls: TLSStream?
    /// The ConnectionBind request, to be handled there as if read there.
    var request: [UInt8]
    /// Bytes queued for the client and not sent yet (TLS records already
    /// numbered by the session): sent there before anything else.
    var unsent: [UInt8]
}

/// The worker's RFC 6062 state: the data pairs (a peer connection and,
/// once bound, the client's data connection), how CONNECTION-IDs name the
/// worker that issued them, and connections waiting for their last send
/// before they move to that worker. The connections themselves are stream
/// connections (Stream/); the code joining both is Worker+TCPRelay.swift.
struct TCPRelayPart: ~Copyable {
    var pairs: DataPairs
    /// Bits at the top of a CONNECTION-ID that name the worker that issued it.
    let tagBits: Int
    /// Connections waiting for their last send before moving to the worker
    /// that owns their ConnectionBind's CONNECTION-ID (rare; control path).
    var pendingHandoffs: [(slot: UInt32, owner: Int, request: [UInt8])] = []

    /// A CONNECT not finished after this long is cancelled (the client gets 447).
    static var connectTimeoutSeconds: Int { 30 }

    init(workers: Int, connections: Int) {
        pairs = DataPairs(capacity: connections)
        tagBits = workers <= 1 ? 0 : Int.bitWidth - (workers - 1).leadingZeroBitCount
    }

    /// The worker that issued `connectionID`.
    func owner(of connectionID: UInt32) -> Int {
        tagBits == 0 ? 0 : Int(connectionID >> UInt32(32 - tagBits))
    }
}
