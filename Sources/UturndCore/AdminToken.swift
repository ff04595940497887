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
        let trimmed = text.utf8.drop { Self.isSpace($0) }.reversed().drop { Self.isSpace($0) }.reversed()
        guard !trimmed.isEmpty else { return nil }
        value = Array(trimmed)
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    /// Reads the token file. Errors say what is wrong, in words for the operator.
    public static func load(path: String) throws(AdminTokenError) -> AdminToken {
        guard let file = fopen(path, "r") else {
            throw AdminTokenError("cannot read --admin-token-file \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= 65_536 {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        if ferror(file) != 0 {
            throw AdminTokenError("cannot read --admin-token-file \(path): \(String(cString: strerror(errno)))")
        }
        guard bytes.count <= 65_536 else { throw AdminTokenError("--admin-token-file \(path) is larger than 64 KiB") }
        guard let token = AdminToken(text: String(decoding: bytes, as: UTF8.self)) else {
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
        let rest = utf8.dropFirst(scheme.count).drop { Self.isSpace($0) }
        return matches(rest)
    }
}

public struct AdminTokenError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
