import FabricConsumer

final class Doubler: CommandHandler {
    let requiredOutputCapacity: UInt32 = 4
    func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count {
            let x = batch.input(i).loadUnaligned(as: Float.self)
            batch.output(i).storeBytes(of: x * 2, as: Float.self)
            batch.complete(i, outputSize: 4)
        }
    }
}
let daemon = FabricDaemon(configuration: DaemonConfiguration(socketPath: "/tmp/fq.sock"), handlers: [1: Doubler()])
try daemon.run()  // serves until Ctrl-C or SIGTERM, then removes the socket
