import FabricConsumer

/// A diagnostic model given on the command line, as `fabricq serve --model` takes it:
/// `ID:KIND[=VALUE][,OPTION=VALUE…]`.
///
/// Kinds: `echo` (output = input), `checksum` (FNV-1a 64 of the input, 8
/// bytes), `empty` (no output), `delay=DURATION` (holds each batch that long
/// without using a CPU, like a GPU call, then echoes), `spin=DURATION` (burns
/// a CPU that long per batch, then echoes).
///
/// Options: `instances=N`, `max-batch=N`, `preferred=N[/N…]`,
/// `max-queue-delay=DURATION`, `queue=N` (queue capacity), `priorities=N`,
/// `execution=threads|poll-thread`, `cpu=N` or `node=N` (instance placement).
///
/// Durations read as `500us`, `20ms`, `5s` (also `ns`, `m`).
public struct ModelSpecification: Sendable, Equatable {
    /// What the model does.
    public enum Kind: Sendable, Equatable {
        /// Copies the input to the output.
        case echo
        /// Writes the input's FNV-1a 64 hash (8 bytes).
        case checksum
        /// Succeeds with no output.
        case empty
        /// Holds each batch this long without a CPU, then echoes.
        case delay(Duration)
        /// Burns a CPU this long per batch, then echoes.
        case spin(Duration)
        /// A kind the caller supplied (see ``parse(_:extraKinds:)``).
        case custom(name: String, value: String?)

        /// What a command's output must be for input `input`: the echo kinds
        /// return it, `checksum` its hash, `empty` nothing (nil for custom kinds).
        public func expectedOutput(for input: [UInt8]) -> [UInt8]? {
            switch self {
            case .echo, .delay, .spin: input
            case .checksum:
                withUnsafeBytes(of: input.withUnsafeBytes { DiagnosticModel.fnv1a($0) }.littleEndian) { Array($0) }
            case .empty: []
            case .custom: nil
            }
        }
    }

    /// The model id.
    public var id: UInt32
    /// What it does.
    public var kind: Kind
    /// How the daemon schedules it.
    public var configuration: ModelConfiguration

    /// What a command's output must be for input `input`: the echo kinds
    /// return it, `checksum` its hash, `empty` nothing (nil for custom kinds).
    public func expectedOutput(for input: [UInt8]) -> [UInt8]? { kind.expectedOutput(for: input) }

    /// The handler for a built-in kind (nil for a custom one).
    public func makeHandler() -> (any BatchHandler)? {
        switch kind {
        case .echo: EchoHandler()
        case .checksum: ChecksumHandler()
        case .empty: EmptyHandler()
        case .delay(let d): BatchDelayHandler(duration: d)
        case .spin(let d): BatchSpinHandler(duration: d)
        case .custom: nil
        }
    }

    /// Parses `ID:KIND[=VALUE][,OPTION=VALUE…]`; `extraKinds` names kinds
    /// beyond the built-in ones (parsed as ``Kind/custom(name:value:)``).
    public static func parse(_ text: String, extraKinds: Set<String> = []) throws(ModelSpecificationError) -> ModelSpecification {
        guard let colon = text.firstIndex(of: ":"), let id = UInt32(text[..<colon]) else {
            throw .init("\(text): expected ID:KIND (a model id, a colon, a kind)")
        }
        let parts = text[text.index(after: colon)...].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let kindText = parts.first, !kindText.isEmpty else { throw .init("\(text): no kind after the colon") }
        let (kindName, kindValue) = split(kindText)
        let kind: Kind
        switch kindName {
        case "echo": kind = .echo
        case "checksum": kind = .checksum
        case "empty": kind = .empty
        case "delay", "spin":
            guard let value = kindValue, let duration = parseDuration(value) else {
                throw .init("\(text): \(kindName) needs a duration, as in \(kindName)=20ms")
            }
            kind = kindName == "delay" ? .delay(duration) : .spin(duration)
        default:
            guard extraKinds.contains(kindName) else {
                throw .init("\(text): unknown kind \(kindName) (echo, checksum, empty, delay=D, spin=D)")
            }
            kind = .custom(name: kindName, value: kindValue)
        }
        var configuration = ModelConfiguration()
        var batching = configuration.batching
        for option in parts.dropFirst() {
            let (name, value) = split(option)
            guard let value else { throw .init("\(text): option \(name) needs a value (\(name)=…)") }
            func integer(_ range: ClosedRange<Int>) throws(ModelSpecificationError) -> Int {
                guard let n = Int(value), range.contains(n) else {
                    throw .init("\(text): \(name) must be an integer in \(range.lowerBound)...\(range.upperBound)")
                }
                return n
            }
            switch name {
            case "instances": configuration.instances = try integer(1...64)
            case "max-batch": batching.maximumBatchSize = try integer(1...256)
            case "preferred":
                let sizes = value.split(separator: "/").compactMap { Int($0) }
                guard !sizes.isEmpty, sizes.count == value.split(separator: "/").count else {
                    throw .init("\(text): preferred takes sizes separated by '/', as in preferred=4/8")
                }
                batching.preferredBatchSizes = sizes
            case "max-queue-delay":
                guard let delay = parseDuration(value) else { throw .init("\(text): max-queue-delay must be a duration") }
                batching.maximumQueueDelay = delay
            case "queue": configuration.queueCapacity = try integer(1...65536)
            case "priorities": configuration.priorityLevels = try integer(1...16)
            case "execution":
                switch value {
                case "threads": configuration.execution = .threads
                case "poll-thread": configuration.execution = .pollThread
                default: throw .init("\(text): execution is threads or poll-thread")
                }
            case "cpu": configuration.placement = .cpu(try integer(0...4095))
            case "node": configuration.placement = .node(try integer(0...1023))
            default: throw .init("\(text): unknown option \(name)")
            }
        }
        configuration.batching = batching  // preferred sizes are clamped to the final maximum as it is set
        return ModelSpecification(id: id, kind: kind, configuration: configuration)
    }

    private static func split(_ text: String) -> (String, String?) {
        guard let eq = text.firstIndex(of: "=") else { return (text, nil) }
        return (String(text[..<eq]), String(text[text.index(after: eq)...]))
    }
}

/// A `--model` argument that does not parse; the message says why.
public struct ModelSpecificationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Reads `500us`, `20ms`, `5s`, `250ns`, `2m` (a non-negative integer or
/// decimal and a unit); nil for anything else.
public func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9)]
    for (unit, scale) in units where text.hasSuffix(unit) {
        let number = text.dropLast(unit.count)
        // "ms" also ends in "s": only a number before the unit counts.
        guard let value = Double(number), value >= 0, value.isFinite, number.allSatisfy({ $0.isNumber || $0 == "." })
        else { continue }
        let ns = value * scale
        guard ns < 9.2e18 else { return nil }
        return .nanoseconds(Int64(ns.rounded()))
    }
    return nil
}
