import FabricProducer

var options = ControllerOptions()
options.waitForDaemon = .seconds(5)  // the daemon may still be starting
let client = try FabricClient.connect(to: "/tmp/fq.sock", options: options)
let result = try await client.submit(modelID: 1, outputCapacity: 4, timeout: .milliseconds(100)) { input in
    input.storeBytes(of: Float(21), as: Float.self)
    return 4  // written straight into shared memory
}
print(result.output.withUnsafeBytes { $0.loadUnaligned(as: Float.self) })  // 42.0
