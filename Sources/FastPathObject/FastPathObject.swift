import Foundation

/// The kernel fast path's BPF object (Sources/CFastPath/bpf/fastpath.bpf.c),
/// compiled with clang -target bpf at build time by the BPFObjectPlugin and
/// embedded here, so uturnd needs no file beside it.
public enum FastPathObject {
    /// The ELF object, as libbpf opens it.
    public static var bytes: [UInt8] {
        guard let data = Data(base64Encoded: fastPathObjectBase64) else { return [] }
        return [UInt8](data)
    }
}

/// The kernel source filter's BPF object (Sources/CFastPath/bpf/source_filter.bpf.c,
/// `--kernel-source-filter`), compiled and embedded as FastPathObject is.
public enum SourceFilterObject {
    /// The ELF object, as libbpf opens it.
    public static var bytes: [UInt8] {
        guard let data = Data(base64Encoded: sourceFilterObjectBase64) else { return [] }
        return [UInt8](data)
    }
}
