import FabricQueue
import Glibc

// Unchecked traffic for throughput: the loops a user would write, with the
// endpoint a local variable of the function that runs the loop.

@inline(never)
func rawProduce(region: SharedRegion, count: Int, burst: Int, producerID: UInt32) throws {
    if region.info.kind == .spsc {
        var producer = try SPSCProducer<Descriptor>(region: region)
        produceLoop(&producer, count: count, burst: burst, producerID: producerID)
    } else {
        var producer = try MPSCProducer<Descriptor>(region: region)
        produceLoop(&producer, count: count, burst: burst, producerID: producerID)
    }
}

@inline(__always)
func produceLoop<P: BlockingRingProducer & ~Copyable>(_ producer: inout P, count: Int, burst: Int, producerID: UInt32)
where P.Element == Descriptor {
    var sent = 0
    if burst == 1 {
        while sent < count {
            if producer.enqueue(
                Descriptor(commandID: UInt64(sent), modelID: 1, inputSize: 64, outputCapacity: 64, producerID: producerID))
            {
                sent += 1
            } else {
                SpinWait.pause()
            }
        }
        return
    }
    while sent < count {
        let r = producer.reserve(upTo: min(burst, count - sent))
        for i in 0..<r.count {
            r.write(
                Descriptor(commandID: UInt64(sent + i), modelID: 1, inputSize: 64, outputCapacity: 64, producerID: producerID),
                at: i)
        }
        if r.isEmpty { SpinWait.pause() }
        sent += r.count
        producer.commit(r)
    }
}

/// Returns millions of descriptors per second, timed from the first arrival.
@inline(never)
func rawConsume(region: SharedRegion, count: Int, burst: Int) throws -> Double {
    let buffer = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
    defer { buffer.deallocate() }
    let start: UInt64
    if region.info.kind == .spsc {
        var consumer = try SPSCConsumer<Descriptor>(region: region)
        start = try consumeLoop(&consumer, count: count, buffer: buffer, producers: 1)
    } else {
        var consumer = try MPSCConsumer<Descriptor>(region: region)
        start = try consumeLoop(&consumer, count: count, buffer: buffer, producers: 4)
    }
    return Double(count) / (Double(MonotonicClock.now() - start) / 1e9) / 1e6
}

@inline(__always)
func consumeLoop<C: BlockingRingConsumer & ~Copyable>(
    _ consumer: inout C, count: Int, buffer: UnsafeMutableBufferPointer<Descriptor>, producers: Int
) throws(RingError) -> UInt64 where C.Element == Descriptor {
    var got = 0
    var start: UInt64 = 0
    // Next sequence per producer id (ids 0...3), checked as in the C reference.
    var expected: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    while got < count {
        let n = try consumer.dequeue(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<min(buffer.count, count - got)]))
        if n == 0 {
            SpinWait.pause()
            continue
        }
        if got == 0 { start = MonotonicClock.now() }
        if producers == 1 {
            // One producer: one sequence, checked exactly as the C reference does.
            for i in 0..<n where buffer[i].commandID != expected.0 &+ UInt64(i) { fail("out of order at \(got + i)") }
            expected.0 &+= UInt64(n)
            got += n
            continue
        }
        for i in 0..<n {
            let ok: Bool
            switch buffer[i].producerID & 3 {
            case 0:
                ok = buffer[i].commandID == expected.0
                expected.0 &+= 1
            case 1:
                ok = buffer[i].commandID == expected.1
                expected.1 &+= 1
            case 2:
                ok = buffer[i].commandID == expected.2
                expected.2 &+= 1
            default:
                ok = buffer[i].commandID == expected.3
                expected.3 &+= 1
            }
            if !ok { fail("out of order at \(got + i)") }
        }
        got += n
    }
    return start
}

/// `mpsc-instructions`: moves `count` descriptors through `region` (an MPSC
/// ring), `burst` at a time, enqueue then dequeue on this thread.
func countMPSCInstructions(region: SharedRegion, count: Int, burst: Int) throws {
    var producer = try MPSCProducer<Descriptor>(region: region)
    var consumer = try MPSCConsumer<Descriptor>(region: region)
    let input = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
    let output = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
    defer {
        input.deallocate()
        output.deallocate()
    }
    var moved = 0
    var check: UInt64 = 0
    input.initialize(repeating: Descriptor())
    while moved < count {
        // Two fields a descriptor, as the C reference fills them.
        for i in 0..<burst {
            input[i].commandID = UInt64(moved + i)
            input[i].producerID = 1
        }
        let n = producer.enqueue(contentsOf: UnsafeBufferPointer(input))
        let m = try consumer.dequeue(into: UnsafeMutableBufferPointer(rebasing: output[0..<n]))
        for i in 0..<m { check &+= output[i].commandID }
        moved += m
    }
    print("moved \(moved) (check \(check))")
}
