// swift-tools-version:6.1
//
// The README's "Getting started", as two programs: `doubler-daemon` serves a
// model that doubles a Float until Ctrl-C or SIGTERM; `doubler-controller`
// (another process) sends it 21 and prints 42.0. `scripts/check-getting-started`
// builds both, runs them against each other and checks the daemon stops cleanly.

import PackageDescription

let package = Package(
    name: "GettingStarted",
    dependencies: [
        // In your package: .package(url: "https://github.com/fabricqueue/fabricqueue", branch: "main")
        .package(name: "FabricQueue", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "doubler-daemon",
            dependencies: [.product(name: "FabricConsumer", package: "FabricQueue")]
        ),
        .executableTarget(
            name: "doubler-controller",
            dependencies: [.product(name: "FabricProducer", package: "FabricQueue")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
