import Foundation
import PackagePlugin

/// Compiles uturn's BPF programs with `clang -target bpf` and embeds each
/// object in the target it is applied to (FastPathObject), as a Swift string
/// the loader decodes at start: the kernel fast path
/// (Sources/CFastPath/bpf/fastpath.bpf.c, `--offload`) and the source
/// filter (source_filter.bpf.c, `--kernel-source-filter`). Two objects, so
/// each loads (and fails to load) without the other. Runs at build time,
/// whenever a program or its map header changes.
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
        let flags = ["-O2", "-g", "-target", "bpf", "-Wall", "-I", includes.path(), "-I", "/usr/include/\(multiarch)"]
        let filterSource = package.appending(path: "Sources/CFastPath/bpf/source_filter.bpf.c")
        let filterHeader = package.appending(path: "Sources/CFastPath/include/source_filter_maps.h")
        let filterObject = context.pluginWorkDirectoryURL.appending(path: "source_filter.bpf.o")
        let filterGenerated = context.pluginWorkDirectoryURL.appending(path: "SourceFilterObject+Bytes.swift")
        return [
            .buildCommand(
                displayName: "Compiling the kernel fast path (clang -target bpf)",
                executable: try clang(context),
                arguments: flags + ["-c", source.path(), "-o", object.path()],
                inputFiles: [source, header] + ["plan.h", "tc.h", "xdp.h"].map { package.appending(path: "Sources/CFastPath/bpf/\($0)") }, outputFiles: [object]),
            .buildCommand(
                displayName: "Embedding the kernel fast path",
                executable: try context.tool(named: "bpf-embed").url,
                arguments: [object.path(), generated.path(), "fastPathObjectBase64"],
                inputFiles: [object], outputFiles: [generated]),
            .buildCommand(
                displayName: "Compiling the kernel source filter (clang -target bpf)",
                executable: try clang(context),
                arguments: flags + ["-c", filterSource.path(), "-o", filterObject.path()],
                inputFiles: [filterSource, filterHeader, header], outputFiles: [filterObject]),
            .buildCommand(
                displayName: "Embedding the kernel source filter",
                executable: try context.tool(named: "bpf-embed").url,
                arguments: [filterObject.path(), filterGenerated.path(), "sourceFilterObjectBase64"],
                inputFiles: [filterObject], outputFiles: [filterGenerated]),
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
