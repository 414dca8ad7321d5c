import FabricConsumer
import FabricDiagnostics
import FabricProducer
import FabricSystem
import Glibc
import SystemPackage

// `serve-models SOCKET SPEC...`: a daemon serving `fabricq serve --model`
// specifications plus three misbehaving kinds the tests need:
//   never        takes every batch and never completes it
//   twice        completes every command twice (the second with size 1)
//   late=D       completes every command from a foreign thread D later,
//                whether or not its session still exists
//   probe        tries socket(AF_INET) and socket(AF_UNIX) in its handler and
//                returns both errnos (0 when the call worked), 2 × u32
// With `--seccomp` before the specifications it restricts its system calls
// once serving (FabricDaemon.restrictSystemCalls), then runs one echo
// through an in-process session (connectInProcess) to model 1 and prints
// "in-process echo ok".
// Prints "listening" once serving; on SIGTERM stops and prints a "stats" line.

/// Takes each batch and never completes it.
final class NeverCompletes: BatchHandler {
    let requiredOutputCapacity: UInt32 = 0
    func start(_ batch: InFlightBatch) {}
}

/// Completes each command twice: the second report must be refused.
final class CompletesTwice: BatchHandler {
    let requiredOutputCapacity: UInt32 = 0
    func start(_ batch: InFlightBatch) {
        for i in 0..<batch.count {
            let n = EchoHandler.copy(batch.input(i), to: batch.output(i))
            precondition(batch.complete(i, outputSize: n), "the first completion must be accepted")
            precondition(!batch.complete(i, outputSize: 1), "a second completion must be refused")
            precondition(!batch.fail(i, code: 9), "a second completion must be refused")
        }
    }
}

/// Completes each batch from a thread of its own, `delay` later: echoes the
/// input, then completes the commands in reverse order.
final class CompletesLate: BatchHandler {
    let requiredOutputCapacity: UInt32 = 0
    let delay: UInt64
    init(delay: UInt64) { self.delay = delay }
    func start(_ batch: InFlightBatch) {
        let delay = self.delay
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let box = Unmanaged.passRetained(LateJob(batch: batch, delay: delay)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread, &attributes,
            { raw in
                let job = Unmanaged<LateJob>.fromOpaque(raw!).takeRetainedValue()
                usleep(UInt32(job.delay / 1000))
                for i in (0..<job.batch.count).reversed() {
                    job.batch.complete(i, outputSize: EchoHandler.copy(job.batch.input(i), to: job.batch.output(i)))
                }
                return nil
            }, box)
        pthread_attr_destroy(&attributes)
        if created != 0 { fail("pthread_create: \(created)") }
    }
}

/// Tries two system calls a restricted daemon refuses and allows, and
/// returns their errnos: what `--seccomp` changes, seen from a handler.
final class SystemCallProbe: CommandHandler {
    let requiredOutputCapacity: UInt32 = 8
    func handle(_ batch: borrowing CommandBatch) throws {
        func attempt(_ domain: Int32) -> UInt32 {
            let fd = socket(domain, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return UInt32(errno) }
            close(fd)
            return 0
        }
        for i in 0..<batch.count {
            let results = [attempt(AF_INET), attempt(AF_UNIX)]
            results.withUnsafeBytes { batch.output(i).copyMemory(from: $0) }
            batch.complete(i, outputSize: 8)
        }
    }
}

/// One echo command to model 1 through `connectInProcess()`: the Model A
/// path, which must keep working under the system-call filter.
func inProcessEcho(_ daemon: FabricDaemon) {
    do {
        var session = try ControllerSession.connect(to: daemon.connectInProcess())
        guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else { fail("no buffers") }
        session.buffers.buffer(input).copyBytes(from: [7, 8, 9])
        try session.submit(CommandRequest(modelID: 1, input: input, inputSize: 3, output: output))
        let done = try session.waitForCompletion(timeout: .seconds(10))
        guard done.succeeded, Array(session.buffers.buffer(output).prefix(done.outputSize)) == [7, 8, 9] else {
            fail("in-process echo: status \(String(describing: done.status))")
        }
        var line = "in-process echo ok\n"
        line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    } catch { fail("in-process echo: \(error)") }
}

final class LateJob: @unchecked Sendable {
    // @unchecked: handed to exactly one thread
    let batch: InFlightBatch
    let delay: UInt64
    init(batch: InFlightBatch, delay: UInt64) {
        self.batch = batch
        self.delay = delay
    }
}

func serveModels(socket: String, specifications: [String]) -> Never {
    var models: [UInt32: ServedModel] = [:]
    let restrict = specifications.first == "--seccomp"
    for text in specifications.drop(while: { $0 == "--seccomp" }) {
        let specification: ModelSpecification
        do { specification = try ModelSpecification.parse(text, extraKinds: ["never", "twice", "late", "probe"]) } catch {
            fail("\(error)")
        }
        let handler: any BatchHandler
        switch specification.kind {
        case .custom(name: "never", _): handler = NeverCompletes()
        case .custom(name: "probe", _): handler = SystemCallProbe()
        case .custom(name: "twice", _): handler = CompletesTwice()
        case .custom(name: "late", let value):
            guard let d = value.flatMap(parseDuration) else { fail("late needs a duration") }
            handler = CompletesLate(delay: d.saturatingNanoseconds)
        default:
            guard let built = specification.makeHandler() else { fail("no handler for \(text)") }
            handler = built
        }
        models[specification.id] = ServedModel(handler: handler, configuration: specification.configuration)
    }
    var configuration = DaemonConfiguration(socketPath: FilePath(socket))
    configuration.session = SessionLimits(slotSize: 4096, slotCount: 32)
    let daemon = FabricDaemon(configuration: configuration, models: models)
    do {
        try daemon.run {
            if restrict {
                do { try daemon.restrictSystemCalls() } catch { fail("\(error)") }
                inProcessEcho(daemon)
            }
            var line = "listening\n"
            line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
        }
    } catch { fail("\(error)") }
    let s = daemon.statistics
    var line =
        "stats rejected=\(s.rejectedCompletions) batches=\(s.batchesStarted) started=\(s.commandsStarted) "
        + "expired=\(s.commandsExpired) cancelled=\(s.commandsCancelled) full=\(s.commandsRejectedQueueFull)\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    exit(0)
}
