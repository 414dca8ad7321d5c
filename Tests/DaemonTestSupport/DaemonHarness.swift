import FabricConsumer
import FabricDiagnostics
import FabricQueue
import FabricSystem
@_exported import FabricTestSupport
import Foundation
import Logging
import Synchronization
import SystemPackage
import XCTest

/// Records a daemon's events with the time each arrived.
package final class EventLog: Sendable {
    private let events = LockedBox<[(DaemonEvent, UInt64)]>([])

    package init() {}

    package func record(_ event: DaemonEvent) { events.withLock { $0.append((event, MonotonicClock.now())) } }

    package var all: [DaemonEvent] { events.withLock { $0.map(\.0) } }

    /// Waits up to `timeout` seconds for an event matching `match`; returns when it arrived.
    package func wait(timeout: Double, _ match: (DaemonEvent) -> Bool) -> UInt64? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let hit = events.withLock({ $0.first { match($0.0) }?.1 }) { return hit }
            usleep(1_000)
        }
        return nil
    }
}

/// A fresh socket path, removed when the test ends.
package func temporarySocketPath(_ test: XCTestCase) -> String {
    let path = NSTemporaryDirectory() + "fq-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    test.addTeardownBlock { unlink(path) }
    return path
}

/// Starts an in-process daemon with the diagnostic handlers (plus `extra`).
package func startDaemon(
    _ test: XCTestCase, socket: String, log: EventLog, extra: [UInt32: any CommandHandler] = [:],
    configure: (inout DaemonConfiguration) -> Void = { _ in }
) throws -> FabricDaemon {
    var configuration = DaemonConfiguration(socketPath: FilePath(socket))
    configuration.session = SessionLimits(submissionCapacity: 64, completionCapacity: 64, slotSize: 4096, slotCount: 64)
    configuration.idle = .adaptive(spinFor: .microseconds(20))
    configure(&configuration)
    let daemon = FabricDaemon(
        configuration: configuration,
        handlers: DiagnosticModel.allHandlers.merging(extra) { $1 },
        onEvent: { log.record($0) })
    try daemon.start()
    test.addTeardownBlock { daemon.stop() }
    return daemon
}

/// A swift-log handler that keeps every message with its metadata, behind a
/// `LockedBox` (pthread mutex), so ThreadSanitizer sees its locking; swift-log's
/// own InMemoryLogHandler locks with a primitive TSan does not see.
package struct RecordingLogHandler: LogHandler {
    /// What was logged.
    package struct Entry: Sendable {
        package var level: Logger.Level
        package var message: String
        package var metadata: Logger.Metadata
    }

    private let store = LockedBox<[Entry]>([])
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .trace

    package init() {}

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        store.withLock { $0.append(Entry(level: event.level, message: "\(event.message)", metadata: merged)) }
    }

    /// Everything logged so far: a new array built under the lock, so it
    /// never shares storage with the one the logging threads append to
    /// (ThreadSanitizer cannot see the runtime's reference counting).
    package var entries: [Entry] { store.withLock { $0.map { $0 } } }
}
