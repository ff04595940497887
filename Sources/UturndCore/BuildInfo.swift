/// Version and how this binary was built, for `--version` and the start-up line.
public enum BuildInfo {
    public static let version = "0.1.0"

    static var compiler: String {
        #if compiler(>=6.3)
            "Swift 6.3"
        #elseif compiler(>=6.2)
            "Swift 6.2"
        #else
            "Swift 6.1"
        #endif
    }

    static var architecture: String {
        #if arch(x86_64)
            "x86_64"
        #elseif arch(arm64)
            "aarch64"
        #else
            "unknown-arch"
        #endif
    }

    static var configuration: String {
        #if DEBUG
            "debug"
        #else
            "release"
        #endif
    }

    /// e.g. `0.1.0 (Swift 6.3, x86_64 Linux, release build)`.
    public static var description: String {
        "\(version) (\(compiler), \(architecture) Linux, \(configuration) build)"
    }
}
