// swift-tools-version:6.1
//
// A downstream package that wants only a ring: it depends on the FabricQueue
// product alone, so neither the session layer (sockets, handshake) nor the
// controller and daemon modules are built or linked. `scripts/test` builds
// it, runs it, and checks that FabricSession was never compiled.

import PackageDescription

let package = Package(
    name: "RingOnly",
    dependencies: [
        // In your package: .package(url: "https://github.com/fabricqueue/fabricqueue", branch: "main")
        .package(name: "FabricQueue", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "ring-only",
            dependencies: [.product(name: "FabricQueue", package: "FabricQueue")]
        )
    ],
    swiftLanguageModes: [.v6]
)
