// swift-tools-version:6.1
//
// The ResNet inference example: a controller that decodes and preprocesses
// images straight into FabricQueue buffer slots, a daemon that runs a real
// convolutional network on the CPU (im2col + OpenBLAS sgemm), and one command
// that runs both. Built from FabricQueue's public API only (a separate package
// depending on it, as a user's would).

import PackageDescription

let package = Package(
    name: "FabricResNet",
    products: [
        .executable(name: "resnet-pipeline", targets: ["resnet-pipeline"]),
        .executable(name: "resnet-daemon", targets: ["resnet-daemon"]),
        .executable(name: "resnet-controller", targets: ["resnet-controller"]),
        .executable(name: "resnet-engine", targets: ["resnet-engine"]),
    ],
    dependencies: [
        .package(name: "FabricQueue", path: "../.."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // Debian system libraries, each through its own module map.
        .systemLibrary(name: "COpenBLAS", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CTurboJPEG", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CLibPNG", providers: [.apt(["libpng-dev"])]),

        // Engine files (format, signatures, seeded and imported weights) and
        // the CPU forward pass.
        .target(
            name: "InferenceEngine",
            dependencies: ["COpenBLAS", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Controller side: decode, resize, crop, normalize into a slot; the
        // run loop over a ControllerSession; the per-stage report.
        .target(
            name: "ImagePipeline",
            dependencies: [
                "CTurboJPEG", "CLibPNG", "InferenceEngine",
                .product(name: "FabricProducer", package: "FabricQueue"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Daemon side: the CommandHandler that runs an engine on a batch.
        .target(
            name: "ResNetService",
            dependencies: [
                "InferenceEngine",
                .product(name: "FabricConsumer", package: "FabricQueue"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .executableTarget(
            name: "resnet-daemon",
            dependencies: [
                "ResNetService",
                .product(name: "FabricPrometheus", package: "FabricQueue"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "resnet-controller",
            dependencies: ["ImagePipeline", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "resnet-pipeline",
            dependencies: ["ImagePipeline", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            resources: [.copy("SampleImages")]
        ),
        .executableTarget(
            name: "resnet-engine",
            dependencies: ["InferenceEngine", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        .testTarget(
            name: "ResNetTests",
            dependencies: [
                "InferenceEngine", "ImagePipeline", "ResNetService",
                "resnet-daemon", "resnet-engine", "resnet-pipeline", "resnet-controller",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
