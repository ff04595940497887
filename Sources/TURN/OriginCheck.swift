import STUN

extension STUNAttributeType {
    /// ORIGIN (0x802F, draft-ietf-tram-stun-origin; coturn reads it):
    /// the web origin of the page that made the request. Comprehension-optional.
    public static let origin = STUNAttributeType(0x802F)
}

/// coturn's `check-origin-consistency`: the ORIGIN an allocation was made
/// with is kept, and every later request on it must carry the same one.
/// Origins are compared in coturn's canonical form, `scheme://host:port`
/// in lower case with the scheme's default port filled in; an ORIGIN that
/// does not parse as such counts as empty. Control path only: the allocation
/// keeps one string, set at Allocate.
enum OriginCheck {
    /// The ports coturn fills in when an origin names none (the scheme's
    /// registered port; other schemes get none).
    static let defaultPorts: [String: Int] = [
        "http": 80, "https": 443, "turn": 3478, "stun": 3478, "turns": 5349, "stuns": 5349, "sip": 5060,
        "sips": 5061, "ftp": 21, "ssh": 22, "svn+ssh": 22, "svn": 3690, "telnet": 23, "ldap": 389, "ldaps": 636,
        "radius": 1645,
    ]

    /// `scheme://host[:port][/…]` → `scheme://host:port` (lower case; the
    /// scheme's default port when none is given), or "" when it is not a URL
    /// with a scheme and a host.
    static func canonical(_ value: UnsafeRawBufferPointer) -> String {
        guard let text = String(validating: value, as: UTF8.self), let colon = text.firstIndex(of: ":"),
            text[colon...].hasPrefix("://")
        else { return "" }
        let scheme = text[..<colon].lowercased()
        guard !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) else {
            return ""
        }
        var authority = text[text.index(colon, offsetBy: 3)...]
        if let end = authority.firstIndex(where: { "/?#".contains($0) }) { authority = authority[..<end] }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var host = Substring(authority)
        var port: Int?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return "" }
            let rest = host[host.index(after: close)...]
            host = host[...close]
            if rest.hasPrefix(":") {
                guard let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return "" }
                port = p
            } else if !rest.isEmpty {
                return ""
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else { return "" }
            port = p
            host = host[..<colon]
        }
        guard !host.isEmpty else { return "" }
        let resolved = port ?? defaultPorts[scheme]
        return "\(scheme)://\(host.lowercased())" + (resolved.map { ":\($0)" } ?? "")
    }

    /// The canonical form of a message's first non-empty ORIGIN ("" for none).
    static func first(in message: STUNMessage) -> String {
        for a in message.attributes where a.type == .origin && a.value.count > 0 {
            return canonical(a.value)
        }
        return ""
    }

    /// Whether a request is consistent with the origin its allocation was
    /// made with: one of its ORIGINs matches it, or, for an allocation made
    /// without one, it carries none (coturn's rule).
    static func isConsistent(_ message: STUNMessage, with origin: String) -> Bool {
        var count = 0
        for a in message.attributes where a.type == .origin && a.value.count > 0 {
            count += 1
            if !origin.isEmpty && canonical(a.value) == origin { return true }
        }
        return origin.isEmpty && count == 0
    }
}
