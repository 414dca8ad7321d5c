// Two threads, one anonymous SPSC ring of descriptors: the producer posts
// bursts, the consumer checks every descriptor arrives once and in order.
// Everything used here comes from `import FabricQueue` alone (FilePath and
// FileDescriptor are re-exported from swift-system).
import FabricQueue
import Foundation

let count = 100_000
let region: SharedRegion
do {
    region = try SharedRegion.createAnonymous(name: "ring-only", kind: .spsc, capacity: 256)
} catch {
    print("ring-only: \(error)")
    exit(1)
}
let descriptorFD: FileDescriptor = region.fileDescriptor
let namedPath = FilePath("/dev/shm/ring-only-example")

let producer = Thread {
    do {
        var ring = try SPSCProducer<Descriptor>(region: region)
        var next: UInt64 = 0
        while next < UInt64(count) {
            let reservation = ring.reserve(upTo: 32)
            let reserved = reservation.count
            for i in 0..<reserved {
                reservation.write(Descriptor(commandID: next &+ UInt64(i), modelID: 1), at: i)
            }
            ring.commit(reservation)
            next &+= UInt64(reserved)
            if reserved == 0 { SpinWait.pause() }
        }
    } catch {
        print("ring-only producer: \(error)")
        exit(1)
    }
}
producer.start()

var consumer: SPSCConsumer<Descriptor>
do { consumer = try SPSCConsumer<Descriptor>(region: region) } catch {
    print("ring-only consumer: \(error)")
    exit(1)
}
var expected: UInt64 = 0
let started = MonotonicClock.now()
while expected < UInt64(count) {
    do {
        guard let descriptor = try consumer.dequeue() else {
            SpinWait.pause()
            if MonotonicClock.now() - started > 30_000_000_000 {
                print("ring-only: stalled at \(expected)")
                exit(1)
            }
            continue
        }
        guard descriptor.commandID == expected else {
            print("ring-only: expected \(expected), got \(descriptor.commandID)")
            exit(1)
        }
        expected += 1
    } catch {
        print("ring-only: \(error)")
        exit(1)
    }
}
print("ring-only: \(count) descriptors in order over fd \(descriptorFD.rawValue) (named regions live at paths like \(namedPath))")
