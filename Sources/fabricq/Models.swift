import ArgumentParser
import FabricDiagnostics
import FabricSession
import Foundation
import Glibc
import SystemPackage

/// `fabricq models`: what a running daemon serves.
struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the models a running daemon serves: id, name, input type and shape, output size, batching.",
        discussion: """
            A models query on the daemon's control socket (no session is opened). Exit status 1 when the \
            daemon does not answer within --timeout.
              fabricq models --socket /run/fabricq/fabricq.sock
              fabricq models --socket /tmp/fq.sock --json | jq '.[] | {id, name, input}'
            """)

    @Option(help: "The daemon's Unix socket.")
    var socket: String

    @Option(help: "How long to wait for the answer (500ms, 2s, ...).")
    var timeout = "2s"

    @Flag(help: "Print the list as JSON.")
    var json = false

    func run() throws {
        guard let limit = parseDuration(timeout), limit > .zero else {
            throw ValidationError("--timeout must be a positive duration (2s, 500ms)")
        }
        let models: [ModelDescription]
        do { models = try ModelDescription.fetch(from: FilePath(socket), timeout: limit) } catch {
            report("\(socket): \(error)")
            throw ExitCode(1)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            say(String(decoding: (try? encoder.encode(models)) ?? Data("[]".utf8), as: UTF8.self))
            return
        }
        let widths = [6, 22, 26, 10, 10, 12, 10, 14]
        say(
            TopFrame.row(
                ["ID", "NAME", "INPUT", "OUTPUT", "MAX BATCH", "PREFERRED", "DELAY", "INSTANCES"], widths: widths))
        for model in models {
            say(
                TopFrame.row(
                    [
                        "\(model.id)", model.name, model.input.map { "\($0)" } ?? "-", "\(model.outputBytes) B",
                        "\(model.maximumBatchSize)",
                        model.preferredBatchSizes.isEmpty
                            ? "-" : model.preferredBatchSizes.map(String.init).joined(separator: ","),
                        "\(model.maximumQueueDelayMicroseconds)us", "\(model.instances)× \(model.execution)",
                    ], widths: widths))
        }
        if models.isEmpty { say("(no models)") }
    }
}
