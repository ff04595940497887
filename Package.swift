// swift-tools-version:6.1
// uturn: a TURN relay server (RFC 8656) whose data path runs on io_uring.
// Module layout and dependency direction: ../shared/ARCHITECTURE.md
//   uturnd -> Relay -> (TURN, URing) -> STUN -> CCrypto ; URing -> CURing
import Foundation
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "uturn",
    products: [
        .executable(name: "uturnd", targets: ["uturnd"]),
        .executable(name: "uturn-bench", targets: ["uturn-bench"]),
        .executable(name: "uturnctl", targets: ["uturnctl"]),
        .executable(name: "uturnadmin", targets: ["uturnadmin"]),
        .library(name: "STUN", targets: ["STUN"]),
        .library(name: "TURN", targets: ["TURN"]),
        .library(name: "URing", targets: ["URing"]),
        .library(name: "Relay", targets: ["Relay"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // --metrics-listen: Prometheus exposition served over HTTP on a control thread.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
    ],
    targets: [
        // C shims: only what Swift cannot import or call cheaply by itself.
        .target(name: "CCrypto", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(name: "CURing", linkerSettings: [.linkedLibrary("uring")]),
        // The kernel fast path: the BPF program (bpf/, compiled by the
        // BPFObjectPlugin, not by SwiftPM's C compiler) and its libbpf loader.
        .target(name: "CFastPath", exclude: ["bpf"], linkerSettings: [.linkedLibrary("bpf")]),
        .executableTarget(name: "bpf-embed"),
        .plugin(name: "BPFObjectPlugin", capability: .buildTool(), dependencies: ["bpf-embed"]),
        .target(name: "FastPathObject", plugins: ["BPFObjectPlugin"]),

        // Debian's database client libraries, imported as they are (module maps only).
        .systemLibrary(name: "CSQLite"),
        .systemLibrary(name: "CPostgres"),
        .systemLibrary(name: "CHiredis"),

        .target(name: "STUN", dependencies: ["CCrypto"], swiftSettings: strict),
        .target(name: "TURN", dependencies: ["STUN", "CCrypto"], swiftSettings: strict),
        .target(name: "URing", dependencies: ["CURing"], swiftSettings: strict),
        .target(
            name: "Relay", dependencies: ["TURN", "URing", "STUN", "CCrypto", "CFastPath", "FastPathObject"],
            swiftSettings: strict),
        // coturn-compatible credential databases (SQLite, PostgreSQL, Redis):
        // read by uturnd's credential thread, written by uturnadmin (its thin main).
        .target(name: "UserStores", dependencies: ["TURN", "CSQLite", "CPostgres", "CHiredis"], swiftSettings: strict),
        .executableTarget(name: "uturnadmin", dependencies: ["UserStores", "TURN"], swiftSettings: strict),
        // The daemon's front end (flags, config file, logging, building the
        // configurations) is a library so it can be tested; uturnd is its thin main.
        .target(
            name: "UturndCore",
            dependencies: [
                "Relay", "TURN", "STUN", "UserStores", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "uturnd", dependencies: ["UturndCore"], swiftSettings: strict),
        // uturnctl: the admin API's command-line client (UturnctlCore is its testable library).
        .target(
            name: "UturnctlCore",
            dependencies: ["CCrypto", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        .executableTarget(name: "uturnctl", dependencies: ["UturnctlCore"], swiftSettings: strict),
        // uturn-bench: TURN load generator over io_uring (BenchCore is its testable library).
        .target(name: "BenchCore", dependencies: ["STUN", "URing", "CURing"], swiftSettings: strict),
        .executableTarget(name: "uturn-bench", dependencies: ["BenchCore"], swiftSettings: strict),

        .testTarget(name: "STUNTests", dependencies: ["STUN"], swiftSettings: strict),
        .testTarget(name: "TURNTests", dependencies: ["TURN", "STUN"], swiftSettings: strict),
        .testTarget(name: "URingTests", dependencies: ["URing", "CURing"], swiftSettings: strict),
        .testTarget(name: "RelayTests", dependencies: ["Relay", "TURN", "STUN", "URing"], swiftSettings: strict),
        .testTarget(
            name: "UturndTests", dependencies: ["UturndCore", "Relay", .product(name: "NIOHTTP1", package: "swift-nio")]),
        .testTarget(
            name: "UturnctlTests",
            dependencies: [
                "UturnctlCore", "UturndCore", "Relay", "TURN", "STUN", .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .testTarget(name: "UserStoresTests", dependencies: ["UserStores", "TURN"], swiftSettings: strict),
        .testTarget(name: "UturnBenchTests", dependencies: ["BenchCore"], swiftSettings: strict),
    ]
)

// package-benchmark suites (Benchmarks/) build only when asked, so the main
// build and `swift test` never fetch or compile the benchmark dependencies:
//   UTURN_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark


if ProcessInfo.processInfo.environment["UTURN_BENCHMARKS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"])
    )
    // Shared by the suites and the callgrind ARC check (Benchmarks/arc-check.sh):
    // the measured operations and their fixtures, and callgrind client requests.
    package.targets += [
        .target(
            name: "BenchmarkFixtures", dependencies: ["STUN", "TURN"], path: "Benchmarks/Support/Fixtures",
            swiftSettings: strict),
        .target(name: "CCallgrind", path: "Benchmarks/Support/CCallgrind"),
        // Not under Benchmarks/<Name>, so the benchmark plugin does not take it for a suite.
        .executableTarget(
            name: "ARCCheck", dependencies: ["BenchmarkFixtures", "CCallgrind"], path: "Benchmarks/Tools/ARCCheck",
            swiftSettings: strict),
        // A real Engine on 127.0.0.1 with a client and a peer on a bound
        // channel: the Relay suite and RelayARCCheck (the worker's per-packet path).
        .target(
            name: "RelayFixture", dependencies: ["Relay", "TURN", "STUN", "URing"],
            path: "Benchmarks/Support/RelayFixture", swiftSettings: strict),
        .executableTarget(
            name: "RelayARCCheck", dependencies: ["RelayFixture"],
            path: "Benchmarks/Tools/RelayARCCheck", swiftSettings: strict),
    ]
    let suites: [(name: String, modules: [String])] = [
        ("STUN", ["STUN", "BenchmarkFixtures"]),
        ("TURN", ["TURN", "STUN", "BenchmarkFixtures"]),
        ("Relay", ["RelayFixture"]),
        ("URing", ["RelayFixture"]),
    ]
    for suite in suites {
        package.targets.append(
            .executableTarget(
                name: "\(suite.name)Benchmarks",
                dependencies: [.product(name: "Benchmark", package: "benchmark")]
                    + suite.modules.map { .target(name: $0) },
                path: "Benchmarks/\(suite.name)",
                swiftSettings: strict,
                plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
            )
        )
    }
}
