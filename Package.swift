// swift-tools-version:6.1
//
// FabricQueue: low-latency command queues between a control plane and a GPU
// inference daemon over shared ("fabric") memory.

import PackageDescription

let package = Package(
    name: "FabricQueue",
    products: [
        .library(name: "FabricQueue", targets: ["FabricQueue"]),
        .library(name: "FabricProducer", targets: ["FabricProducer"]),
        .library(name: "FabricConsumer", targets: ["FabricConsumer"]),
        .executable(name: "fabricq", targets: ["fabricq"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Tiny C shim for the syscalls Swift cannot call directly
        // (memfd_create, the variadic syscall(SYS_futex, ...), fcntl sealing).
        .target(name: "CFabricShims"),
        // The ABI for C peers: include/fabricqueue.h (header-only) and a probe
        // that lets the Swift tests compare its offsets with the Swift layout.
        .target(name: "CFabricQueueABI"),
        // libnuma through its system headers (Debian package libnuma-dev).
        .systemLibrary(name: "CNuma", providers: [.apt(["libnuma-dev"])]),

        // Core: shared regions, the ring layout (ABI), SPSC and MPSC rings.
        .target(
            name: "FabricQueue",
            dependencies: [
                "CFabricShims",
                "CNuma",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // What the controller links.
        .target(
            name: "FabricProducer",
            dependencies: [
                "FabricQueue",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // What the daemon links.
        .target(
            name: "FabricConsumer",
            dependencies: [
                "FabricQueue",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // Checked traffic (sequence numbers, producer ids, checksums) shared by
        // `fabricq` and the test helper: not a product.
        .target(name: "FabricDiagnostics", dependencies: ["FabricQueue", "FabricConsumer"]),

        // The operator's command-line tool.
        .executableTarget(
            name: "fabricq",
            dependencies: [
                "FabricQueue",
                "FabricConsumer",
                "FabricDiagnostics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Test-only helper that tests spawn as real child processes.
        .executableTarget(
            name: "fabricq-test-helper",
            dependencies: ["FabricQueue", "FabricProducer", "FabricDiagnostics"]
        ),

        // Spawning real child processes with deadlines, for the test targets.
        .target(name: "FabricTestSupport", path: "Tests/FabricTestSupport"),
        .testTarget(
            name: "FabricQueueTests",
            dependencies: ["FabricQueue", "FabricDiagnostics", "FabricTestSupport", "CFabricShims", "CFabricQueueABI",
                           "fabricq-test-helper", "fabricq"]
        ),
        .testTarget(
            name: "FabricConsumerTests",
            dependencies: ["FabricConsumer", "FabricProducer"]
        ),
        // Controller + daemon in separate processes: sessions, failures, observability.
        .testTarget(
            name: "FabricSessionTests",
            dependencies: [
                "FabricConsumer", "FabricProducer", "FabricDiagnostics", "FabricTestSupport",
                "fabricq-test-helper", "fabricq",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
