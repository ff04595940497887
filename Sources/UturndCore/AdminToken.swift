import Glibc

/// The admin API's bearer token, read from `--admin-token-file`.
/// Compared in constant time, so response timing does not tell an attacker
/// how much of a guess was right.
public struct AdminToken: Sendable {
    /// The token itself (never logged).
    let value: [UInt8]

    /// A token from text: surrounding whitespace (the file's trailing
    /// newline) is not part of it; nil when nothing is left.
    public init?(text: String) {
        let trimmed = SecretFile.trimmed(text)
        guard !trimmed.isEmpty else { return nil }
        value = trimmed
    }

    /// Reads the token file. Errors say what is wrong, in words for the operator.
    public static func load(path: String) throws(AdminTokenError) -> AdminToken {
        let text: String
        do { text = try SecretFile.read(path: path, flag: "--admin-token-file") } catch {
            throw AdminTokenError(error.description)
        }
        guard let token = AdminToken(text: text) else {
            throw AdminTokenError("--admin-token-file \(path) is empty; put a long random token in it (e.g. openssl rand -hex 32)")
        }
        return token
    }

    /// Whether `candidate` is the token, in time that depends only on the
    /// lengths (every byte is looked at whatever the first difference).
    public func matches<C: Collection<UInt8>>(_ candidate: C) -> Bool {
        var difference = UInt8(truncatingIfNeeded: value.count ^ candidate.count)
        var i = 0
        for b in candidate {
            difference |= b ^ value[i % value.count]
            i += 1
        }
        return difference == 0 && candidate.count == value.count
    }

    /// Whether an `Authorization` header value carries the token
    /// (`Bearer <token>`, the scheme's case ignored).
    public func authorizes(header: String?) -> Bool {
        guard let header else { return false }
        let utf8 = Array(header.utf8)
        let scheme = Array("bearer ".utf8)
        guard utf8.count > scheme.count,
            zip(utf8.prefix(scheme.count), scheme).allSatisfy({ ($0 | 0x20) == $1 || ($0 == $1) })
        else { return false }
        let rest = utf8.dropFirst(scheme.count).drop { SecretFile.isSpace($0) }
        return matches(rest)
    }
}

public struct AdminTokenError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
