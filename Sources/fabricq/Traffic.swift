import ArgumentParser
import FabricDiagnostics
import FabricQueue
import Foundation
import SystemPackage

/// `--doorbell poll|futex|adaptive` (eventfd needs descriptor passing, which
/// separate shell commands cannot do).
enum DoorbellChoice: String, ExpressibleByArgument, CaseIterable {
    case poll, futex, adaptive

    func doorbell(spinMicroseconds: Int) -> Doorbell? {
        switch self {
        case .poll: nil  // the spinning loop: no fences, no syscalls
        case .futex: .futex
        case .adaptive: .adaptive(spinFor: .microseconds(spinMicroseconds), then: .futex)
        }
    }
}

/// The doorbell options `produce` and `consume` share.
struct DoorbellOptions: ParsableArguments {
    @Option(help: "How to wait for the peer and wake it: poll (spin), futex (sleep) or adaptive (spin, then sleep).")
    var doorbell: DoorbellChoice = .poll

    @Option(help: "Adaptive doorbell: microseconds to spin before sleeping.")
    var spinMicroseconds = 50

    var selected: Doorbell? { doorbell.doorbell(spinMicroseconds: spinMicroseconds) }
}

struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Post N checked descriptors (sequence number, producer id, checksum).")

    @Argument(help: "Path of the region file.")
    var path: String

    @Option(help: "Descriptors to post.")
    var count: Int

    @Option(help: "Descriptors per burst (written in place with reserve/commit when > 1).")
    var burst = 1

    @Option(help: "Producer id carried in every descriptor (distinct per concurrent producer).")
    var producerId: UInt32 = 0

    @Option(help: "Give up after this many seconds without progress (ring full).")
    var timeout: Double = 30

    @OptionGroup var wake: DoorbellOptions

    func run() throws {
        let region = try attach(path)
        let bell = wake.selected
        let timeoutNs = UInt64(max(timeout, 0) * 1e9)
        let start = MonotonicClock.now()
        do {
            switch region.info.kind {
            case .spsc:
                var producer = try SPSCProducer<Descriptor>(region: region)
                try TrafficRunner.produce(
                    into: &producer, producerID: producerId, count: count, burst: burst,
                    idleTimeoutNanoseconds: timeoutNs, doorbell: bell)
            case .mpsc:
                var producer = try MPSCProducer<Descriptor>(region: region)
                try TrafficRunner.produce(
                    into: &producer, producerID: producerId, count: count, burst: burst,
                    idleTimeoutNanoseconds: timeoutNs, doorbell: bell)
            }
        } catch {
            report("\(path): \(error)")
            throw ExitCode.failure
        }
        let seconds = Double(MonotonicClock.now() - start) / 1e9
        print(
            "produced \(count) descriptors as producer \(producerId) in \(format(seconds)) s (\(format(Double(count) / seconds / 1e6)) M/s)"
        )
    }
}

struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take N descriptors, verify per-producer order and checksums, report losses.",
        discussion: "Exits 1 on any loss, duplication, corruption, ring fault or timeout.")

    @Argument(help: "Path of the region file.")
    var path: String

    @Option(help: "Descriptors to take.")
    var count: Int

    @Option(help: "Descriptors per burst.")
    var burst = 32

    @Option(
        help: "Give up after this many seconds with nothing received (with a futex or adaptive doorbell, sleeping meanwhile).")
    var timeout: Double = 10

    @OptionGroup var wake: DoorbellOptions

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(
        help:
            "MPSC: step over a slot a dead producer reserved and never published (it would stall every consumer at that position), and go on. Use only once that producer is known to be gone."
    )
    var skipStalled = false

    func run() throws {
        let region = try attach(path)
        var skipped = 0
        let bell = wake.selected
        let timeoutNs = UInt64(max(timeout, 0) * 1e9)
        var verifier = StreamVerifier()
        var failure: TrafficError?
        let start = MonotonicClock.now()
        do {
            switch region.info.kind {
            case .spsc:
                var consumer = try SPSCConsumer<Descriptor>(region: region)
                try TrafficRunner.consume(
                    from: &consumer, count: count, burst: burst,
                    idleTimeoutNanoseconds: timeoutNs, verifier: &verifier, doorbell: bell)
            case .mpsc:
                var consumer = try MPSCConsumer<Descriptor>(region: region)
                var remaining = count
                while true {
                    do throws(TrafficError) {
                        try TrafficRunner.consume(
                            from: &consumer, count: remaining, burst: burst,
                            idleTimeoutNanoseconds: timeoutNs, verifier: &verifier, doorbell: bell)
                        break
                    } catch {
                        guard skipStalled, case .ring(.slotStalled(let position, _), let done) = error,
                            consumer.skipStalledSlot() == position
                        else { throw error }
                        remaining -= done
                        skipped += 1
                    }
                }
                if consumer.abandonedCount > 0 { report("stepped over \(consumer.abandonedCount) abandoned slot(s)") }
            }
        } catch let error as TrafficError {
            failure = error
        } catch {
            report("\(path): \(error)")
            throw ExitCode.failure
        }
        let seconds = Double(MonotonicClock.now() - start) / 1e9
        let rate = Double(verifier.received) / seconds / 1e6
        if json {
            let fields: [String: Any] = [
                "received": verifier.received, "lost": verifier.lost, "duplicated": verifier.duplicated,
                "corrupt": verifier.corrupt, "producers": verifier.nextSequence.count, "seconds": seconds,
                "millionPerSecond": rate, "error": failure.map { "\($0)" } ?? NSNull(), "skippedStalled": skipped,
            ]
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(
                "received \(verifier.received) lost \(verifier.lost) duplicated \(verifier.duplicated) corrupt \(verifier.corrupt) from \(verifier.nextSequence.count) producer(s) in \(format(seconds)) s (\(format(rate)) M/s)"
            )
        }
        if skipped > 0 { report("skipped \(skipped) stalled slot(s) (their descriptors are lost)") }
        if let failure { report("\(path): \(failure)") }
        if failure != nil || !verifier.isClean { throw ExitCode.failure }
    }
}

private func attach(_ path: String) throws -> SharedRegion {
    do {
        return try SharedRegion.attach(at: FilePath(path))
    } catch {
        report("\(path): \(error)")
        throw ExitCode.failure
    }
}

func format(_ x: Double) -> String { String(format: "%.3f", x) }
