// Microbenchmarks of the hot paths, with the suite's malloc counter: every
// benchmark here must allocate nothing while it is measured (the threshold
// below is absolute zero, checked by `swift package benchmark thresholds check`).
//
// Producer and consumer run on two threads of this process over a real
// shared region; the cross-process figures against C, DPDK and Boost come
// from Benchmarks/compare.py.

import Benchmark
import FabricConsumer
import FabricProducer
import FabricQueue
import Foundation
import Glibc
import Synchronization
import SystemPackage

let descriptorsPerIteration = 1_000_000

/// A producer thread started before measurement begins, released by `go`.
final class ProducerThread: @unchecked Sendable {
    // @unchecked: `thread` is set before start and read at join; `go` is atomic
    let go = Atomic<Bool>(false)
    var thread = pthread_t()
    let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<ProducerThread>.fromOpaque(raw!).takeRetainedValue()
                // Acquire: pairs with `start`'s release; spin so starting costs no syscall.
                while !me.go.load(ordering: .acquiring) { SpinWait.pause() }
                me.body()
                return nil
            }, context)
    }

    func start() {
        // Release: the producer starts after everything set up before it.
        go.store(true, ordering: .releasing)
    }

    func join() { pthread_join(thread, nil) }
}

func spscThroughput(burst: Int, _ benchmark: Benchmark) throws {
    let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 1024)
    let count = descriptorsPerIteration
    let producer = ProducerThread {
        guard var ring = try? SPSCProducer<Descriptor>(region: region) else { return }
        var sent = 0
        while sent < count {
            let r = ring.reserve(upTo: min(burst, count - sent))
            for i in 0..<r.count { r.write(Descriptor(commandID: UInt64(sent + i), inputSize: 64), at: i) }
            if r.isEmpty { SpinWait.pause() }
            sent += r.count
            ring.commit(r)
        }
    }
    var consumer = try SPSCConsumer<Descriptor>(region: region)
    let buffer = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
    defer { buffer.deallocate() }
    benchmark.startMeasurement()
    producer.start()
    var got = 0
    while got < count {
        let n = try consumer.dequeue(into: buffer)
        if n == 0 { SpinWait.pause() }
        got += n
    }
    benchmark.stopMeasurement()
    producer.join()
    blackHole(buffer[0])
}

func mpscThroughput(producers: Int, burst: Int, _ benchmark: Benchmark) throws {
    let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 1024)
    let perProducer = descriptorsPerIteration / producers
    let threads = (0..<producers).map { id in
        ProducerThread {
            guard var ring = try? MPSCProducer<Descriptor>(region: region) else { return }
            var sent = 0
            while sent < perProducer {
                let r = ring.reserve(upTo: min(burst, perProducer - sent))
                for i in 0..<r.count {
                    r.write(Descriptor(commandID: UInt64(sent + i), producerID: UInt32(id)), at: i)
                }
                if r.isEmpty { SpinWait.pause() }
                sent += r.count
                ring.commit(r)
            }
        }
    }
    var consumer = try MPSCConsumer<Descriptor>(region: region)
    let buffer = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
    defer { buffer.deallocate() }
    benchmark.startMeasurement()
    threads.forEach { $0.start() }
    var got = 0
    while got < perProducer * producers {
        let n = try consumer.dequeue(into: buffer)
        if n == 0 { SpinWait.pause() }
        got += n
    }
    benchmark.stopMeasurement()
    threads.forEach { $0.join() }
}

func pingPong(doorbell: Doorbell, roundTrips: Int, _ benchmark: Benchmark) throws {
    let request = try SharedRegion.createAnonymous(kind: .spsc, capacity: 64)
    let response = try SharedRegion.createAnonymous(kind: .spsc, capacity: 64)
    let echo = ProducerThread {
        guard var inbox = try? SPSCConsumer<Descriptor>(region: request),
            var outbox = try? SPSCProducer<Descriptor>(region: response)
        else { return }
        for _ in 0..<roundTrips {
            guard let d = try? inbox.receive(doorbell: doorbell, timeout: .seconds(10)),
                (try? outbox.send(d, doorbell: doorbell, timeout: .seconds(10))) != nil
            else { return }
        }
    }
    var outbox = try SPSCProducer<Descriptor>(region: request)
    var inbox = try SPSCConsumer<Descriptor>(region: response)
    benchmark.startMeasurement()
    echo.start()
    for i in 0..<roundTrips {
        try outbox.send(Descriptor(commandID: UInt64(i)), doorbell: doorbell, timeout: .seconds(10))
        blackHole(try inbox.receive(doorbell: doorbell, timeout: .seconds(10)))
    }
    benchmark.stopMeasurement()
    echo.join()
}

// Names are plain identifiers: benchmark 1.38.1 stores threshold files under
// shell-safe names but looks them up by the raw name.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: 10,
        thresholds: [.mallocCountTotal: .init(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0, .p100: 0])]
    )

    for burst in [1, 8, 32] {
        Benchmark("SPSC_two_threads_burst_\(burst)") { benchmark in try spscThroughput(burst: burst, benchmark) }
    }
    for burst in [1, 8, 32] {
        Benchmark("MPSC_2_producers_burst_\(burst)") { benchmark in
            try mpscThroughput(producers: 2, burst: burst, benchmark)
        }
    }
    Benchmark("BufferPool_acquire_release_1M") { benchmark in
        let region = try DataRegion.createAnonymous(slotSize: 4096, slotCount: 64)
        var pool = BufferPool(region: region)
        var held: (BufferSlot?, BufferSlot?) = (nil, nil)
        benchmark.startMeasurement()
        for i in 0..<descriptorsPerIteration {
            // Keep two slots in flight, as a controller with two commands outstanding would.
            if let old = i & 1 == 0 ? held.0 : held.1 { pool.release(old) }
            let slot = pool.acquire()
            if i & 1 == 0 { held.0 = slot } else { held.1 = slot }
        }
        benchmark.stopMeasurement()
        blackHole(held)
    }
    // Issue 16: runs of contiguous slots (first fit over the bitmap), four
    // buffers of 1, 3, 8 and 2 slots in flight in a 256-slot pool, as a
    // controller mixing small and large inputs would.
    Benchmark("BufferPool_runs_acquire_release_1M") { benchmark in
        let region = try DataRegion.createAnonymous(slotSize: 4096, slotCount: 256)
        var pool = BufferPool(region: region)
        var held: (BufferSlot?, BufferSlot?, BufferSlot?, BufferSlot?) = (nil, nil, nil, nil)
        benchmark.startMeasurement()
        for i in 0..<descriptorsPerIteration {
            switch i & 3 {
            case 0:
                if let old = held.0 { pool.release(old) }
                held.0 = pool.acquire(slots: 1)
            case 1:
                if let old = held.1 { pool.release(old) }
                held.1 = pool.acquire(slots: 3)
            case 2:
                if let old = held.2 { pool.release(old) }
                held.2 = pool.acquire(bytes: 8 * 4096)
            default:
                if let old = held.3 { pool.release(old) }
                held.3 = pool.acquire(slots: 2)
            }
        }
        benchmark.stopMeasurement()
        blackHole(held)
    }
    Benchmark("PingPong_busy_poll_100k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try pingPong(doorbell: .busyPoll, roundTrips: 100_000, benchmark)
    }
    Benchmark("PingPong_futex_5k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try pingPong(doorbell: .futex, roundTrips: 5_000, benchmark)
    }
    Benchmark("PingPong_adaptive_100k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try pingPong(doorbell: .adaptive(spinFor: .microseconds(50), then: .futex), roundTrips: 100_000, benchmark)
    }
    Benchmark("Session_submit_completion_50k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try sessionRoundTrips(50_000, benchmark)
    }
    Benchmark("Session_staged_batches_of_4_50k_commands", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try sessionStagedBatches(50_000, batch: 4, benchmark)
    }
    // Issue 14: the path of target 5 at its cheapest, the handler on the poll
    // thread, for the same-run comparison with the previous revision's
    // `Session_submit_completion_50k_round_trips` (same requests).
    Benchmark("Session_poll_thread_50k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try withEmptyDaemonSession(execution: .pollThread) { session in try sessionRoundTrips(&session, 50_000, benchmark) }
    }
    // Issue 14: the deferred path. The model runs on the poll thread and its
    // handler completes through `InFlightBatch`; requests carry a priority and
    // a deadline, so the batcher's priority levels and deadline checks run.
    // Issue 16: typed inputs. Every command carries a tensor header the poll
    // thread reads into a copy and checks against the model; one in eight
    // has the wrong shape and is refused with a mismatch record.
    Benchmark("Session_typed_poll_thread_50k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try withEmptyDaemonSession(execution: .pollThread, handler: TypedNoOpHandler()) { session in
            try typedRoundTrips(&session, 50_000, benchmark)
        }
    }
    Benchmark("Session_deferred_poll_thread_50k_round_trips", configuration: .init(scalingFactor: .kilo)) { benchmark in
        try withEmptyDaemonSession(execution: .pollThread) { session in
            try sessionRoundTrips(&session, 50_000, benchmark, priority: 1, deadline: .seconds(5))
        }
    }
}

/// Starts an in-process daemon serving the empty handler on a fresh socket,
/// connects a busy-polling `ControllerSession` with `batching`, runs `body`
/// with it, and stops the daemon.
func withEmptyDaemonSession(
    batching: BatchingPolicy = .immediate, execution: ModelExecution = .threads, handler custom: (any BatchHandler)? = nil,
    _ body: (inout ControllerSession) throws -> Void
) throws {
    let socket = FilePath("/tmp/fq-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock")
    var configuration = DaemonConfiguration(socketPath: socket)
    configuration.idle = .busyPoll
    configuration.session = SessionLimits(submissionCapacity: 64, completionCapacity: 64, slotSize: 4096, slotCount: 16)
    let handler: any BatchHandler = custom ?? (execution == .threads ? NoOpHandler() : DeferredNoOpHandler())
    let daemon = FabricDaemon(
        configuration: configuration,
        models: [noOpModel: ServedModel(handler: handler, configuration: ModelConfiguration(execution: execution))])
    try daemon.start()
    var options = ControllerOptions()
    options.wait = .busyPoll
    options.batching = batching
    defer { daemon.stop() }
    var session = try ControllerSession.connect(to: socket, options: options)
    try body(&session)
}

/// Dynamic batching on the polling path: `stage(_:)` gathers `batch`
/// requests through the session layer's accumulator, which posts them as one
/// publication when the batch is full; then the `batch` completions are
/// reaped. The gate checks that gathering and posting allocate nothing.
func sessionStagedBatches(_ commands: Int, batch: Int, _ benchmark: Benchmark) throws {
    try withEmptyDaemonSession(batching: BatchingPolicy(maximumBatchSize: batch, maximumWait: .seconds(1))) { session in
        try stagedBatches(&session, commands: commands, batch: batch, benchmark)
    }
}

func stagedBatches(_ session: inout ControllerSession, commands: Int, batch: Int, _ benchmark: Benchmark) throws {
    func oneBatch(_ first: Int) throws {
        for i in 0..<batch {
            guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else {
                throw OutOfBuffers()
            }
            session.buffers.buffer(input).storeBytes(of: UInt64(first + i), as: UInt64.self)
            try session.stage(CommandRequest(modelID: noOpModel, input: input, inputSize: 8, output: output))
        }
        for _ in 0..<batch {
            let done = try session.waitForCompletion(timeout: .seconds(10))
            session.buffers.release(done.input)
            session.buffers.release(done.output)
        }
    }
    for i in stride(from: 0, to: 1000, by: batch) { try oneBatch(i) }  // warm-up
    benchmark.startMeasurement()
    for i in stride(from: 0, to: commands, by: batch) { try oneBatch(i) }
    benchmark.stopMeasurement()
}

/// The empty handler: completes every command with no output.
final class NoOpHandler: CommandHandler {
    let requiredOutputCapacity: UInt32 = 0
    func handle(_ batch: borrowing CommandBatch) throws {
        for i in 0..<batch.count { batch.complete(i, outputSize: 0) }
    }
}
/// The empty handler on the deferred interface: completes through the batch handle.
final class DeferredNoOpHandler: BatchHandler {
    let requiredOutputCapacity: UInt32 = 0
    func start(_ batch: InFlightBatch) {
        for i in 0..<batch.count { batch.complete(i, outputSize: 0) }
    }
}

/// The deferred empty handler of a model that takes f16 tensors of 2×3.
final class TypedNoOpHandler: BatchHandler {
    let requiredOutputCapacity: UInt32 = 64
    var inputSpecification: TensorSpecification? { TensorSpecification(elementTypes: [.float16], shape: [2, 3]) }
    func start(_ batch: InFlightBatch) {
        for i in 0..<batch.count { batch.complete(i, outputSize: batch.tensorData(i).count) }
    }
}

/// Round trips of typed commands, one in eight of the wrong shape.
func typedRoundTrips(_ session: inout ControllerSession, _ roundTrips: Int, _ benchmark: Benchmark) throws {
    // Made once: building a header allocates (its shape is an array); writing one does not.
    guard let good = TensorHeader(elementType: .float16, shape: [2, 3]),
        let wrong = TensorHeader(elementType: .float16, shape: [3, 2])
    else { throw OutOfBuffers() }
    func roundTrip(_ i: Int) throws {
        guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else {
            throw OutOfBuffers()
        }
        let header = i & 7 == 7 ? wrong : good
        guard let data = session.buffers.writeTensorHeader(header, into: input) else { throw OutOfBuffers() }
        data.storeBytes(of: UInt64(i), as: UInt64.self)
        try session.submit(CommandRequest(modelID: noOpModel, input: input, tensor: header, output: output))
        let done = try session.waitForCompletion(timeout: .seconds(10))
        session.buffers.release(done.input)
        session.buffers.release(done.output)
    }
    for i in 0..<1000 { try roundTrip(i) }  // warm-up: first touches, lazy metadata
    benchmark.startMeasurement()
    for i in 0..<roundTrips { try roundTrip(i) }
    benchmark.stopMeasurement()
}

/// A buffer pool that ran dry in a benchmark loop (a bug in the loop).
struct OutOfBuffers: Error {}

let noOpModel: UInt32 = 4

/// Submit → completion round trips through a real session: an in-process
/// `FabricDaemon` (busy-polling poll thread, the empty diagnostic handler)
/// and a `ControllerSession` on this thread, over a Unix socket handshake,
/// memfd rings and a data region. One command in flight: the fabric path's
/// latency, buffer pool included.
func sessionRoundTrips(_ roundTrips: Int, _ benchmark: Benchmark) throws {
    try withEmptyDaemonSession { session in try sessionRoundTrips(&session, roundTrips, benchmark) }
}

func sessionRoundTrips(
    _ session: inout ControllerSession, _ roundTrips: Int, _ benchmark: Benchmark, priority: UInt8 = 0,
    deadline: Duration? = nil
) throws {
    func roundTrip(_ i: Int) throws {
        guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else {
            throw OutOfBuffers()
        }
        session.buffers.buffer(input).storeBytes(of: UInt64(i), as: UInt64.self)
        try session.submit(
            CommandRequest(
                modelID: noOpModel, input: input, inputSize: 8, output: output, priority: priority, deadline: deadline))
        let done = try session.waitForCompletion(timeout: .seconds(10))
        session.buffers.release(done.input)
        session.buffers.release(done.output)
    }
    for i in 0..<1000 { try roundTrip(i) }  // warm-up: first touches, lazy metadata
    session.resetLatency()
    benchmark.startMeasurement()
    for i in 0..<roundTrips { try roundTrip(i) }
    benchmark.stopMeasurement()
    let total = session.latency.summary(.total)
    if ProcessInfo.processInfo.environment["FQ_BENCH_VERBOSE"] != nil {
        var line = "session round trip: p50 \(total.p50) ns, p99 \(total.p99) ns, p99.9 \(total.p999) ns over \(total.count)\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}
