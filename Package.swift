// swift-tools-version:6.1
//
// FabricQueue: low-latency command queues between a control plane and a GPU
// inference daemon over shared ("fabric") memory.
//
// Layers, each depending only on those below it:
//
//                                       FabricPrometheus (/metrics over HTTP)
//                                             |
//   FabricProducer (controller)        FabricConsumer (daemon, its telemetry)
//              \                          /
//               FabricSession  (Unix socket, peer policy, handshake, fd passing,
//                  |            data region, buffer pool, batching)
//               FabricQueue    (regions, descriptor ABI, SPSC/MPSC rings,
//                  |            doorbells, NUMA placement)
//               FabricSystem   (package-internal: the one syscall funnel,
//                  |            SystemCallError, threads, locks, clocks)
//               CFabricSystem  (C: one thin wrapper a syscall, CMSG_* macros)

import PackageDescription

let package = Package(
    name: "FabricQueue",
    products: [
        // The rings alone: no sockets, no sessions.
        .library(name: "FabricQueue", targets: ["FabricQueue"]),
        // The session layer, for peers that build their own controller or
        // daemon loop: Unix socket, peer policy, handshake, fd passing, data
        // region, buffer pool, batching policy.
        .library(name: "FabricSession", targets: ["FabricSession"]),
        // What a controller links (re-exports FabricQueue and FabricSession).
        .library(name: "FabricProducer", targets: ["FabricProducer"]),
        // What a daemon links (re-exports FabricQueue and FabricSession).
        .library(name: "FabricConsumer", targets: ["FabricConsumer"]),
        // The remote transport both of them use for `ucx://` sessions (UCX,
        // the remote handshake, its keys); re-exported by both.
        .library(name: "FabricRemote", targets: ["FabricRemote"]),
        // A daemon's telemetry as a Prometheus /metrics endpoint (an HTTP
        // server: its own product, so a daemon that wants none links none).
        .library(name: "FabricPrometheus", targets: ["FabricPrometheus"]),
        .executable(name: "fabricq", targets: ["fabricq"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // No default traits: they pull swift-configuration and full Foundation, unused here.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Ed25519 keys and signatures for remote sessions' handshake.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // ── System layer ────────────────────────────────────────────────
        // C: memfd_create, fcntl sealing, futex, eventfd, ppoll, accept4,
        // SO_PEERCRED, CMSG_* helpers, affinity, statfs. No logic.
        .target(name: "CFabricSystem"),
        // libnuma through its system headers (Debian package libnuma-dev).
        .systemLibrary(name: "CNuma", providers: [.apt(["libnuma-dev"])]),
        // Swift: the syscall funnel (`systemCall`, EINTR policy in one
        // place), SystemCallError, file/memory/socket/futex/eventfd calls,
        // threads, locks, clocks, process liveness. Not a product: its one
        // public type, SystemCallError, reaches users through a typealias in
        // FabricQueue (MonotonicClock and SpinWait are FabricQueue's own).
        .target(
            name: "FabricSystem",
            dependencies: ["CFabricSystem", .product(name: "SystemPackage", package: "swift-system")]
        ),

        // libseccomp through its system headers (Debian package libseccomp-dev).
        .systemLibrary(name: "CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        // UCX's UCP API through its system headers (Debian package libucx-dev).
        .systemLibrary(name: "CUCX", pkgConfig: "ucx", providers: [.apt(["libucx-dev"])]),
        // A process-wide seccomp allow-list (package-internal; its own target
        // so that ring-only users need no libseccomp).
        .target(name: "FabricSandbox", dependencies: ["CSeccomp", "FabricSystem"]),

        // ── Core: regions, the ring ABI, rings, doorbells, NUMA ─────────
        .target(name: "FabricQueue", dependencies: ["FabricSystem", "CNuma"]),
        // The ABI for C peers: include/fabricqueue.h (header-only) and a probe
        // that lets the Swift tests compare its offsets with the Swift layout.
        .target(name: "CFabricQueueABI"),

        // ── Session layer ───────────────────────────────────────────────
        .target(name: "FabricSession", dependencies: ["FabricQueue"]),

        // ── Remote transport ────────────────────────────────────────────
        // UCX workers, listeners, endpoints and active messages; the remote
        // session protocol on them (handshake, commands, completions,
        // heartbeats) and its Ed25519 keys.
        .target(
            name: "FabricRemote",
            dependencies: [
                "CUCX", "FabricSystem", "FabricSession", .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),

        // ── Services ───────────────────────────────────────────────────
        // What the controller links.
        .target(
            name: "FabricProducer",
            dependencies: [
                "FabricSession", "FabricRemote",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // What the daemon links.
        .target(
            name: "FabricConsumer",
            dependencies: [
                "FabricSession", "FabricSandbox", "FabricRemote",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // ── Operations ──────────────────────────────────────────────────
        // The daemon's telemetry at GET /metrics: swift-prometheus's registry
        // and exposition, Hummingbird's HTTP server.
        .target(
            name: "FabricPrometheus",
            dependencies: [
                "FabricConsumer",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // ── Tools ──────────────────────────────────────────────────────
        // Checked traffic (sequence numbers, producer ids, checksums) and the
        // diagnostic handlers, shared by `fabricq` and the test helper: not a product.
        .target(name: "FabricDiagnostics", dependencies: ["FabricQueue", "FabricConsumer"]),
        // The operator's command-line tool.
        .executableTarget(
            name: "fabricq",
            dependencies: [
                "FabricQueue", "FabricConsumer", "FabricProducer", "FabricDiagnostics", "FabricPrometheus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // Test-only helper that tests spawn as real child processes.
        .executableTarget(
            name: "fabricq-test-helper",
            dependencies: [
                "FabricQueue", "FabricSession", "FabricProducer", "FabricConsumer", "FabricDiagnostics", "FabricRemote",
            ]
        ),

        // ── Tests: one target per library target ────────────────────────
        // Spawning real child processes with deadlines.
        .target(name: "FabricTestSupport", dependencies: ["CFabricQueueABI"], path: "Tests/FabricTestSupport"),
        // An in-process daemon with the diagnostic models, for the service tests.
        .target(
            name: "DaemonTestSupport",
            dependencies: ["FabricConsumer", "FabricDiagnostics", "FabricTestSupport"],
            path: "Tests/DaemonTestSupport"
        ),
        .testTarget(name: "FabricSystemTests", dependencies: ["FabricSystem", "CFabricSystem", "FabricTestSupport"]),
        .testTarget(
            name: "FabricQueueTests",
            dependencies: [
                "FabricQueue", "FabricDiagnostics", "FabricTestSupport", "CFabricQueueABI", "CFabricSystem",
                "fabricq-test-helper", "fabricq",
            ]
        ),
        .testTarget(
            name: "FabricSessionTests",
            dependencies: ["FabricSession", "CFabricSystem", "CFabricQueueABI", "FabricTestSupport", "fabricq-test-helper"]
        ),
        // Controller API against an in-process daemon (the TSan job runs these).
        .testTarget(
            name: "FabricProducerTests",
            dependencies: [
                "FabricProducer", "FabricRemote", "DaemonTestSupport", "FabricDiagnostics",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        // Validation, and controller + daemon in separate processes (kill -9, refusals).
        .testTarget(
            name: "FabricConsumerTests",
            dependencies: [
                "FabricConsumer", "FabricProducer", "FabricPrometheus", "DaemonTestSupport", "FabricDiagnostics",
                "FabricTestSupport",
                "fabricq-test-helper", "fabricq",
            ]
        ),
        .testTarget(name: "FabricDiagnosticsTests", dependencies: ["FabricDiagnostics"]),
        // UCX and remote sessions between real processes (loopback, and
        // between network namespaces when root).
        .testTarget(
            name: "FabricRemoteTests",
            dependencies: [
                "FabricRemote", "FabricSystem", "FabricTestSupport", "fabricq-test-helper", "fabricq",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
