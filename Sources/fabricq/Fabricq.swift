import ArgumentParser
import FabricQueue
import Glibc

/// `fabricq`: create, inspect and exercise FabricQueue regions from the shell.
@main
struct Fabricq: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fabricq",
        abstract: "Operate FabricQueue shared-memory rings.",
        discussion: """
            Run `consume` and one or more `produce` as separate processes on the same \
            region for a cross-process smoke test:
              fabricq create /dev/shm/demo --kind mpsc --capacity 1024
              fabricq consume /dev/shm/demo --count 2000000 &
              fabricq produce /dev/shm/demo --count 1000000 --producer-id 1 &
              fabricq produce /dev/shm/demo --count 1000000 --producer-id 2
            """,
        subcommands: [
            Create.self, Inspect.self, Produce.self, Consume.self, Remove.self, Serve.self, Load.self, Top.self,
            Ping.self, Models.self, Keygen.self,
        ])
}

/// Prints `fabricq: message` on standard error.
func report(_ message: String) {
    var line = "fabricq: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Parses `--kind` by name; help lists the names (not the raw ABI values,
/// which the parser would not take).
extension RingKind: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "spsc": self = .spsc
        case "mpsc": self = .mpsc
        default: return nil
        }
    }

    public static var allValueStrings: [String] { ["spsc", "mpsc"] }

    public var defaultValueDescription: String { self == .spsc ? "spsc" : "mpsc" }
}
