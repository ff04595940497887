import Glibc

/// Small files holding a secret (`--admin-token-file`, `--nonce-secret-file`),
/// read at start and at SIGHUP, never logged.
enum SecretFile {
    /// Largest file taken: a secret is a line, not a document.
    static let maxBytes = 65_536

    /// The file's text. Errors name the flag and the path, in words for the operator.
    static func read(path: String, flag: String) throws(SecretFileError) -> String {
        guard let file = fopen(path, "r") else {
            throw SecretFileError("cannot read \(flag) \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= maxBytes {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        if ferror(file) != 0 {
            throw SecretFileError("cannot read \(flag) \(path): \(String(cString: strerror(errno)))")
        }
        guard bytes.count <= maxBytes else { throw SecretFileError("\(flag) \(path) is larger than 64 KiB") }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension SecretFile {
    /// The secret in a file's text: surrounding whitespace (the trailing
    /// newline) is not part of it.
    static func trimmed(_ text: String) -> [UInt8] {
        Array(text.utf8.drop { isSpace($0) }.reversed().drop { isSpace($0) }.reversed())
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
}

struct SecretFileError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
