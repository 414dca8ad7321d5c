import ArgumentParser
import FabricProducer

/// `fabricq keygen NAME`: a controller's key pair for remote sessions.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an Ed25519 key pair for remote sessions: NAME.key (private, mode 0600) and NAME.pub.",
        discussion: """
            Add NAME.pub's line to the daemon's --authorized-keys file; give the controller --key NAME.key.
            Existing files are never overwritten.
              fabricq keygen controller
              cat controller.pub >> authorized-keys
              fabricq serve --socket /tmp/fq.sock --listen ucx://10.0.0.7:7300 --authorized-keys authorized-keys
              fabricq load --socket ucx://10.0.0.7:7300 --key controller.key --model 1
            """)

    @Argument(help: "The key's path without extension.")
    var name: String

    func run() throws {
        let key = RemoteSigningKey.generate()
        do { try key.write(to: name) } catch {
            report("\(error)")
            throw ExitCode(1)
        }
        print("wrote \(name).key and \(name).pub (\(key.publicKey.fingerprint))")
    }
}
