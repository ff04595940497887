// libFuzzer entry for the STUN module. Built by scripts/fuzz-stun together
// with Sources/STUN/*.swift as one module (so no `import STUN`), with
// -sanitize=fuzzer,address. Any crash, ASan report or trap here is a bug:
// parsing must reject malformed input with a STUNError, never trap or read
// outside the buffer.

/// A fixed key so the integrity paths run on every input that parses.
private let fuzzKey = try! IntegrityKey(shortTermPassword: "VOkJxbRl1RmTxUk/WvJxBt")

@_cdecl("LLVMFuzzerTestOneInput")
public func stunParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Copy into an exact-size allocation so ASan catches any read past the end.
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
    defer { copy.deallocate() }
    if size > 0 { copy.baseAddress!.copyMemory(from: data, byteCount: size) }
    let bytes = UnsafeRawBufferPointer(copy)

    var sink = 0
    switch PacketKind(classifying: bytes) {
    case .stun:
        if let m = try? STUNMessage(parsing: bytes) {
            sink &+= exercise(m)
            if let s = try? SendIndication(m) { sink &+= s.data.count &+ Int(s.peer.port) }
            sink &+= reencode(m)
        }
    case .channelData:
        if let cd = try? ChannelData(parsing: bytes) { sink &+= cd.payload.count &+ Int(cd.channelNumber) }
        sink &+= ChannelData.streamFrameSize(bytes) ?? 0
    case .other:
        break
    }
    _ = STUNHeader.messageSize(bytes)
    withExtendedLifetime(sink) {}
    return 0
}

/// Touches every accessor, iterator and verifier.
private func exercise(_ m: STUNMessage) -> Int {
    var n = m.length &+ Int(m.method.rawValue) &+ Int(m.messageClass.rawValue)
    for a in m.attributes {
        precondition(a.offset + 4 + a.value.count <= m.bytes.count)
        n &+= a.value.reduce(0) { $0 &+ Int($1) }
    }
    n &+= m.mappedAddress.map { Int($0.port) } ?? 0
    n &+= m.xorMappedAddress.map { Int($0.port) } ?? 0
    n &+= m.alternateServer.map { Int($0.port) } ?? 0
    n &+= m.xorPeerAddress.map { Int($0.port) } ?? 0
    n &+= m.xorRelayedAddress.map { Int($0.port) } ?? 0
    for p in m.xorPeerAddresses { n &+= Int(p.port) }
    for r in m.xorRelayedAddresses { n &+= Int(r.port) }
    n &+= (m.username?.utf8.count ?? 0) &+ (m.realm?.utf8.count ?? 0) &+ (m.nonce?.utf8.count ?? 0)
    n &+= (m.software?.utf8.count ?? 0) &+ (m.userHash?.count ?? 0)
    n &+= (m.messageIntegrity?.count ?? 0) &+ (m.messageIntegritySHA256?.count ?? 0)
    n &+= Int((m.fingerprint ?? 0) & 0xFF)
    if let e = m.errorCode { n &+= e.code &+ e.reason.utf8.count }
    if let e = m.addressErrorCode { n &+= e.code &+ Int(e.family) &+ e.reason.utf8.count }
    if let list = m.passwordAlgorithms { for a in list { n &+= Int(a.id.rawValue) &+ a.parameters.count } }
    n &+= m.passwordAlgorithmsBytes?.count ?? 0
    if let a = m.passwordAlgorithm { n &+= Int(a.id.rawValue) &+ a.parameters.count }
    if let list = m.unknownAttributes { for t in list { n &+= Int(t.rawValue) } }
    n &+= Int(m.channelNumber ?? 0) &+ Int(m.lifetime ?? 0) &+ (m.data?.count ?? 0)
    n &+= Int(m.requestedAddressFamily ?? 0) &+ Int(m.additionalAddressFamily ?? 0)
    n &+= Int(m.requestedTransport ?? 0) &+ (m.evenPort == true ? 1 : 0) &+ (m.dontFragment ? 1 : 0)
    n &+= Int(truncatingIfNeeded: m.reservationToken ?? 0) &+ Int(m.icmp?.data ?? 0)
    n &+= Int(m.connectionID ?? 0)
    n &+= m.unknownComprehensionRequired.count
    n &+= m.verifyMessageIntegrity(key: fuzzKey) ? 1 : 0
    n &+= m.verifyMessageIntegritySHA256(key: fuzzKey) ? 1 : 0
    n &+= m.verifyFingerprint() ? 1 : 0
    for t in [STUNAttributeType.priority, .iceControlled, .xorPeerAddress, .software] where m.contains(t) {
        n &+= m.first(t)?.value.count ?? 0
    }
    return n
}

/// Copies every meaningful attribute into a fresh message through the encoder
/// (raw, then the typed forms of addresses), re-parses it and checks the
/// addresses survive: exercises the encoder on hostile values.
private func reencode(_ m: STUNMessage) -> Int {
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: m.bytes.count + 256, alignment: 1)
    defer { out.deallocate() }
    guard var e = try? STUNEncoder(into: out, type: m.messageType, transactionID: m.transactionID) else { return 0 }
    for a in m.attributes {
        switch a.type {
        case .messageIntegrity, .messageIntegritySHA256, .fingerprint:
            continue
        case .xorPeerAddress:
            continue  // re-added below through the typed path
        default:
            do { try e.append(a.type, bytes: a.value) } catch { return 0 }
        }
    }
    for p in m.xorPeerAddresses { do { try e.append(.xorPeerAddress, xorAddress: p) } catch { return 0 } }
    do {
        try e.appendMessageIntegrity(key: fuzzKey)
        try e.appendFingerprint()
    } catch {
        return 0
    }
    guard let again = try? STUNMessage(parsing: UnsafeRawBufferPointer(e.message)) else {
        // Every value came from a message that parsed, so the copy must parse too.
        fatalError("re-encoded message does not parse")
    }
    precondition(again.verifyMessageIntegrity(key: fuzzKey) && again.verifyFingerprint())
    precondition(Array(again.xorPeerAddresses) == Array(m.xorPeerAddresses))
    return again.length
}
