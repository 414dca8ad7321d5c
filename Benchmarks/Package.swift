// swift-tools-version:6.1
//
// FabricQueue's microbenchmarks, in their own package (the swift-nio layout)
// so that users of the library never resolve benchmark-only dependencies.
//   cd Benchmarks && swift package benchmark
// The cross-process comparison with C, DPDK and Boost is Benchmarks/compare.py.

import PackageDescription

let package = Package(
    name: "FabricQueueBenchmarks",
    dependencies: [
        .package(name: "FabricQueue", path: ".."),
        // The default traits pull a package that is not available here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "RingBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FabricQueue", package: "FabricQueue"),
                .product(name: "FabricProducer", package: "FabricQueue"),
                .product(name: "FabricConsumer", package: "FabricQueue"),
            ],
            path: "Benchmarks/RingBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v6]
)
