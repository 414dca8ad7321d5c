import FabricQueue
import FabricSystem

/// Why a traffic run stopped early.
public enum TrafficError: Error, CustomStringConvertible {
    /// No progress for the idle timeout; `done` items had gone through.
    case timedOut(done: Int)
    /// The ring reported a fault.
    case ring(RingError, done: Int)
    /// The doorbell failed.
    case doorbell(DoorbellError, done: Int)

    public var description: String {
        switch self {
        case .timedOut(let done): "timed out with no progress after \(done) descriptors"
        case .ring(let error, let done): "\(error) after \(done) descriptors"
        case .doorbell(let error, let done): "\(error) after \(done) descriptors"
        }
    }
}

/// Drives checked traffic through any ring end: the loops behind
/// `fabricq produce` / `fabricq consume` and the multi-process tests.
public enum TrafficRunner {
    /// Sends `count` checked descriptors from `producerID` in bursts of
    /// `burst`. Without a doorbell it spins (with the CPU pause hint) while the
    /// ring is full; with one it uses blocking `send`, which sleeps as the
    /// doorbell says and rings the consumer. Throws
    /// ``TrafficError/timedOut(done:)`` after `idleTimeout` nanoseconds
    /// without progress.
    @inlinable
    public static func produce<P: BlockingRingProducer & ~Copyable>(
        into producer: inout P, producerID: UInt32, count: Int, burst: Int, idleTimeoutNanoseconds: UInt64,
        doorbell: Doorbell? = nil
    ) throws(TrafficError) where P.Element == Descriptor {
        let burst = max(1, burst)
        if let doorbell {
            let timeout = Duration.nanoseconds(Int64(clamping: idleTimeoutNanoseconds))
            let buffer = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
            defer { buffer.deallocate() }
            var sent = 0
            while sent < count {
                let n = min(burst, count - sent)
                for i in 0..<n { buffer[i] = CheckedTraffic.descriptor(producer: producerID, sequence: UInt64(sent + i)) }
                var done = 0
                while done < n {
                    do {
                        done += try producer.send(
                            contentsOf: UnsafeBufferPointer(rebasing: buffer[done..<n]),
                            doorbell: doorbell, timeout: timeout)
                    } catch {
                        switch error {
                        case .timedOut: throw .timedOut(done: sent + done)
                        case .ring(let e): throw .ring(e, done: sent + done)
                        case .doorbell(let e): throw .doorbell(e, done: sent + done)
                        }
                    }
                }
                sent += n
            }
            return
        }
        var sent = 0
        var lastProgress = MonotonicClock.now()
        var spins = 0
        // Polling is how *we* wait; a consumer may still sleep, so ring it after
        // every burst (one fence and one load; a syscall only if it sleeps).
        func ring(_ producer: inout P) throws(TrafficError) {
            do { try producer.ringConsumer(.busyPoll) } catch {
                if case .doorbell(let e) = error { throw .doorbell(e, done: sent) }
            }
        }
        if burst == 1 {
            while sent < count {
                if producer.enqueue(CheckedTraffic.descriptor(producer: producerID, sequence: UInt64(sent))) {
                    sent += 1
                    spins = 0
                    try ring(&producer)
                } else {
                    try idle(&spins, &lastProgress, idleTimeoutNanoseconds, sent)
                }
            }
            return
        }
        // Bursts are written in place: reserve, fill, commit.
        while sent < count {
            let reservation = producer.reserve(upTo: min(burst, count - sent))
            if reservation.isEmpty {
                producer.commit(reservation)
                try idle(&spins, &lastProgress, idleTimeoutNanoseconds, sent)
                continue
            }
            for i in 0..<reservation.count {
                reservation.write(CheckedTraffic.descriptor(producer: producerID, sequence: UInt64(sent + i)), at: i)
            }
            sent += reservation.count
            spins = 0
            producer.commit(reservation)
            try ring(&producer)
        }
    }

    /// Receives `count` descriptors in bursts of up to `burst` into `verifier`.
    /// Without a doorbell it spins while the ring is empty; with one it uses
    /// blocking `receive`, which sleeps as the doorbell says. Throws on a ring
    /// fault or after `idleTimeout` nanoseconds with nothing received.
    @inlinable
    public static func consume<C: BlockingRingConsumer & ~Copyable>(
        from consumer: inout C, count: Int, burst: Int, idleTimeoutNanoseconds: UInt64,
        verifier: inout StreamVerifier, doorbell: Doorbell? = nil
    ) throws(TrafficError) where C.Element == Descriptor {
        let burst = max(1, burst)
        var received = 0
        var lastProgress = MonotonicClock.now()
        var spins = 0
        let buffer = UnsafeMutableBufferPointer<Descriptor>.allocate(capacity: burst)
        defer { buffer.deallocate() }
        if let doorbell {
            let timeout = Duration.nanoseconds(Int64(clamping: idleTimeoutNanoseconds))
            while received < count {
                let n: Int
                do {
                    n = try consumer.receive(
                        into: UnsafeMutableBufferPointer(rebasing: buffer[0..<min(burst, count - received)]),
                        doorbell: doorbell, timeout: timeout)
                } catch {
                    switch error {
                    case .timedOut: throw .timedOut(done: received)
                    case .ring(let e): throw .ring(e, done: received)
                    case .doorbell(let e): throw .doorbell(e, done: received)
                    }
                }
                for i in 0..<n { verifier.record(buffer[i]) }
                received += n
            }
            return
        }
        while received < count {
            let n: Int
            do {
                n = try consumer.dequeue(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<min(burst, count - received)]))
            } catch {
                throw .ring(error, done: received)
            }
            if n == 0 {
                try idle(&spins, &lastProgress, idleTimeoutNanoseconds, received)
                continue
            }
            for i in 0..<n { verifier.record(buffer[i]) }
            received += n
            spins = 0
            // As in `produce`: producers waiting for space may sleep.
            do { try consumer.ringProducers(.busyPoll) } catch {
                if case .doorbell(let e) = error { throw .doorbell(e, done: received) }
            }
        }
    }

    /// One spin of a polling loop; every 4096 spins checks the clock.
    @inlinable
    static func idle(_ spins: inout Int, _ lastProgress: inout UInt64, _ timeout: UInt64, _ done: Int) throws(TrafficError) {
        if spins == 0 { lastProgress = MonotonicClock.now() }
        spins += 1
        SpinWait.pause()
        if spins & 4095 == 0 && MonotonicClock.now() &- lastProgress > timeout {
            throw .timedOut(done: done)
        }
    }
}
