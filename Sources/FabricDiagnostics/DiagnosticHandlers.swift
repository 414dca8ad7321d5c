import FabricConsumer
import FabricSystem
import Glibc

/// Handlers that need no model, for smoke tests, benchmarks and the C
/// controller example: `fabricq serve` registers them under these model ids.
public enum DiagnosticModel: UInt32, CaseIterable, Sendable {
    /// Copies the input to the output (as much as fits).
    case echo = 1
    /// Writes the FNV-1a 64 hash of the input as 8 little-endian bytes.
    case checksum = 2
    /// Sleeps `flags` milliseconds (at most 10 s), then echoes.
    case delay = 3
    /// Does nothing and succeeds with no output (the fabric path alone).
    case empty = 4

    /// A handler for this model.
    public func makeHandler() -> any BatchHandler {
        switch self {
        case .echo: EchoHandler()
        case .checksum: ChecksumHandler()
        case .delay: FlagDelayHandler()
        case .empty: EmptyHandler()
        }
    }

    /// Every diagnostic model's handler, keyed by model id.
    public static var allHandlers: [UInt32: any BatchHandler] {
        Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, $0.makeHandler()) })
    }

    /// FNV-1a 64 over `bytes`: what ``checksum`` writes.
    public static func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return hash
    }
}

/// Copies each input to its output.
public final class EchoHandler: CommandHandler {
    /// Any output size is accepted; the copy is truncated to fit.
    public let requiredOutputCapacity: UInt32 = 0
    /// Its name for discovery.
    public var modelName: String { "echo" }
    /// An echo handler.
    public init() {}
    /// Copies input to output for every command.
    public func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count { Self.echo(batch, i) }
    }

    /// Copies command `i`'s input to its output (as much as fits) and completes it.
    static func echo(_ batch: borrowing CommandBatch, _ i: Int) {
        batch.complete(i, outputSize: copy(batch.input(i), to: batch.output(i)))
    }

    /// Copies as much of `input` as fits into `output`; returns the bytes copied.
    public static func copy(_ input: UnsafeRawBufferPointer, to output: UnsafeMutableRawBufferPointer) -> Int {
        let n = min(input.count, output.count)
        if n > 0, let source = input.baseAddress { output.baseAddress?.copyMemory(from: source, byteCount: n) }
        return n
    }
}

/// Writes each input's FNV-1a 64 hash.
public final class ChecksumHandler: CommandHandler {
    /// Eight bytes of output.
    public let requiredOutputCapacity: UInt32 = 8
    /// Its name for discovery.
    public var modelName: String { "checksum" }
    /// A checksum handler.
    public init() {}
    /// Hashes every input.
    public func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count {
            batch.output(i).storeBytes(of: DiagnosticModel.fnv1a(batch.input(i)).littleEndian, as: UInt64.self)
            batch.complete(i, outputSize: 8)
        }
    }
}

/// Sleeps each command's `flags` milliseconds, then echoes it: a slow
/// model whose cost the controller picks per command.
public final class FlagDelayHandler: CommandHandler {
    /// Any output size.
    public let requiredOutputCapacity: UInt32 = 0
    /// Its name for discovery.
    public var modelName: String { "delay (flags ms)" }
    /// A delay handler.
    public init() {}
    /// Sleeps each command's `flags` milliseconds (at most 10 s), then echoes it.
    public func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count {
            usleep(min(UInt32(batch.descriptor(i).flags & ~Descriptor.tensorHeaderFlag), 10_000) * 1000)
            EchoHandler.echo(batch, i)
        }
    }
}

/// Holds each batch for a fixed time without using a CPU (as a GPU call
/// would), then echoes every command: `fabricq serve --model ID:delay=20ms`.
public final class BatchDelayHandler: CommandHandler {
    /// Any output size.
    public let requiredOutputCapacity: UInt32 = 0
    /// Its name for discovery.
    public var modelName: String { "delay" }
    /// How long each batch takes.
    public let duration: Duration
    /// A handler that holds each batch for `duration`.
    public init(duration: Duration) { self.duration = duration }
    /// Sleeps `duration` (`usleep`, re-checked against the monotonic
    /// clock so a signal cannot shorten it), then echoes every command.
    public func handle(_ batch: borrowing CommandBatch) throws {
        let end = MonotonicClock.now() &+ duration.saturatingNanoseconds
        while case let now = MonotonicClock.now(), now < end {
            usleep(UInt32(min((end - now + 999) / 1000, 1_000_000)))
        }
        for i in 0..<batch.count { EchoHandler.echo(batch, i) }
    }
}

/// Burns a CPU for a fixed time per batch, then echoes every command:
/// `fabricq serve --model ID:spin=1ms`.
public final class BatchSpinHandler: CommandHandler {
    /// Any output size.
    public let requiredOutputCapacity: UInt32 = 0
    /// Its name for discovery.
    public var modelName: String { "spin" }
    /// How long each batch computes.
    public let duration: Duration
    /// A handler that spins `duration` per batch.
    public init(duration: Duration) { self.duration = duration }
    /// Spins on the monotonic clock for `duration`, then echoes every command.
    public func handle(_ batch: borrowing CommandBatch) throws {
        let end = MonotonicClock.now() &+ duration.saturatingNanoseconds
        var sink: UInt64 = 0
        while MonotonicClock.now() < end { sink = sink &* 6_364_136_223_846_793_005 &+ 1 }
        if sink == 42 { cpuRelax() }
        for i in 0..<batch.count { EchoHandler.echo(batch, i) }
    }
}

/// Succeeds at once with no output.
public final class EmptyHandler: CommandHandler {
    /// No output needed.
    public let requiredOutputCapacity: UInt32 = 0
    /// Its name for discovery.
    public var modelName: String { "empty" }
    /// An empty handler.
    public init() {}
    /// Completes every command.
    public func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count { batch.complete(i, outputSize: 0) }
    }
}
