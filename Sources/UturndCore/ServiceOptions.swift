import ArgumentParser

/// Which of STUN and TURN uturn serves, over which transports, and what its
/// answers carry: coturn's switches of the same names, so a coturn
/// `turnserver.conf` that uses them keeps its meaning.
public struct ServiceOptions: ParsableArguments {
    @Flag(name: .customLong("no-udp"), help: "No UDP listener: clients come over TCP or TLS only (relays still use UDP unless --no-udp-relay). Restart to change.")
    public var noUDP = false

    @Flag(name: .customLong("no-udp-relay"), help: "Refuse UDP allocations (REQUESTED-TRANSPORT UDP gets 442): only RFC 6062 TCP allocations, from clients over TCP or TLS.")
    public var noUDPRelay = false

    @Flag(name: [.customLong("stun-only"), .customShort("S")], help: "A STUN server only: Binding is answered, TURN requests and Send indications are dropped unanswered (as coturn does).")
    public var stunOnly = false

    @Flag(name: .customLong("no-stun"), help: "A TURN server only: Binding requests are dropped unanswered.")
    public var noSTUN = false

    @Flag(name: .customLong("secure-stun"), help: "Binding requests need long-term credentials, like TURN requests (401 first, then a signed answer).")
    public var secureSTUN = false

    @Flag(name: .customLong("no-software-attribute"), help: "Leave the SOFTWARE attribute (\"uturn\") out of responses.")
    public var noSoftwareAttribute = false

    @Flag(name: .customLong("check-origin-consistency"), help: "Requests on an allocation must carry the ORIGIN attribute its Allocate carried (none if it had none), compared as scheme://host:port; others get 441, as in coturn.")
    public var checkOriginConsistency = false

    @Flag(name: .customLong("mobility"), help: "RFC 8016 mobility: a UDP client that asks with an empty MOBILITY-TICKET gets a ticket, and a Refresh carrying it from a new address or port moves the allocation there (relayed address, permissions and channels kept). Off: MOBILITY-TICKET gets 405. Works with any --workers (a move that reaches another worker is handed to the allocation's).")
    public var mobility = false

    @Option(name: .customLong("server-name"), help: ArgumentHelp("coturn's oAuth server name (default there: the realm). uturn has no oAuth, so it is only shown by --check-config; it does not change the realm.", valueName: "name"))
    public var serverName: String?

    @Option(name: .customLong("permission-lifetime"), help: ArgumentHelp("Testing only: seconds a permission lasts, 1...300 (RFC 8656: 300). Clients refresh on the RFC's schedule, so a shorter value drops their permissions. Restart to change.", valueName: "seconds"))
    public var permissionLifetime: Int = 300

    @Option(name: .customLong("channel-lifetime"), help: ArgumentHelp("Testing only: seconds a channel binding lasts, 1...600 (RFC 8656: 600). Clients refresh on the RFC's schedule, so a shorter value drops their channels. Restart to change.", valueName: "seconds"))
    public var channelLifetime: Int = 600

    public init() {}
}
