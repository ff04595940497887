import Foundation
import PackagePlugin

/// Compiles the kernel fast path (Sources/CFastPath/bpf/fastpath.bpf.c) with
/// `clang -target bpf` and embeds the object in the target it is applied to
/// (FastPathObject), as a Swift string the loader decodes at start. Runs at
/// build time, whenever the program or its map header changes.
@main
struct BPFObjectPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let package = context.package.directoryURL
        let source = package.appending(path: "Sources/CFastPath/bpf/fastpath.bpf.c")
        let header = package.appending(path: "Sources/CFastPath/include/fastpath_maps.h")
        let includes = package.appending(path: "Sources/CFastPath/include")
        let object = context.pluginWorkDirectoryURL.appending(path: "fastpath.bpf.o")
        let generated = context.pluginWorkDirectoryURL.appending(path: "FastPathObject+Bytes.swift")
        #if arch(x86_64)
        let multiarch = "x86_64-linux-gnu"
        #elseif arch(arm64)
        let multiarch = "aarch64-linux-gnu"
        #else
        let multiarch = "unknown"
        #endif
        return [
            .buildCommand(
                displayName: "Compiling the kernel fast path (clang -target bpf)",
                executable: try clang(context),
                arguments: [
                    "-O2", "-g", "-target", "bpf", "-Wall", "-I", includes.path(), "-I", "/usr/include/\(multiarch)",
                    "-c", source.path(), "-o", object.path(),
                ],
                inputFiles: [source, header] + ["plan.h", "tc.h", "xdp.h"].map { package.appending(path: "Sources/CFastPath/bpf/\($0)") }, outputFiles: [object]),
            .buildCommand(
                displayName: "Embedding the kernel fast path",
                executable: try context.tool(named: "bpf-embed").url,
                arguments: [object.path(), generated.path()],
                inputFiles: [object], outputFiles: [generated]),
        ]
    }

    /// The clang that comes with the Swift toolchain builds BPF; so does Debian's.
    private func clang(_ context: PluginContext) throws -> URL {
        if let tool = try? context.tool(named: "clang") { return tool.url }
        for candidate in ["/usr/bin/clang", "/opt/swift/usr/bin/clang", "/usr/local/bin/clang"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return URL(fileURLWithPath: candidate)
        }
        throw PluginError.noClang
    }

    enum PluginError: Error, CustomStringConvertible {
        case noClang
        var description: String { "no clang found to compile the BPF fast path (install Debian's clang, or use the Swift toolchain's)" }
    }
}
