import FabricQueue
import FabricSession
import FabricSystem
import Glibc
import SystemPackage

// Ping-pong between two processes over two SPSC rings, waiting on a doorbell
// kind: the lost-wake-up hunt (with random delays on both sides) and the
// round-trip latency figures.
//
//   pingpong KIND COUNT DELAYS [CPU ECHO_CPU]   KIND: poll|futex|eventfd|adaptive; DELAYS: 0|1;
//     CPU/ECHO_CPU pin this process and the echo peer (e.g. 0 1)
//     creates the rings (anonymous memfds), spawns `echo` with them inherited,
//     passes eventfds over a socketpair with SCM_RIGHTS, runs COUNT round trips,
//     prints one line: kind count p50 p99 max (ns) sleeps spurious.
//   echo KIND COUNT DELAYS REQUEST_FD RESPONSE_FD SOCKET_FD [CPU]

/// splitmix64: cheap randomness for the delays, no syscall.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Now and then spin a little or sleep a little, so that the peer reaches its
/// sleep path at every point of the protocol.
@inline(__always)
func randomDelay(_ rng: inout SplitMix) {
    let r = rng.next()
    if r % 8 == 0 {
        for _ in 0..<Int((r >> 8) % 1500) { SpinWait.pause() }
    } else if r % 251 == 0 {
        usleep(UInt32((r >> 20) % 150))
    }
}

func doorbells(_ kind: String, _ fds: [EventFD]) -> (request: Doorbell, response: Doorbell) {
    switch kind {
    case "poll": return (.busyPoll, .busyPoll)
    case "futex": return (.futex, .futex)
    case "adaptive":
        let d = Doorbell.adaptive(spinFor: .microseconds(20), then: .futex)
        return (d, d)
    case "eventfd":
        return (
            .eventFD(dataAvailable: fds[0], spaceAvailable: fds[1]),
            .eventFD(dataAvailable: fds[2], spaceAvailable: fds[3])
        )
    default: fail("unknown doorbell kind \(kind)")
    }
}

let roundTripTimeout = Duration.seconds(10)

func pin(_ cpu: Int?) {
    guard let cpu else { return }
    do { try NUMA.pinCurrentThread(toCPU: cpu) } catch { fail("\(error)") }
}

func runPingPong(kind: String, count: Int, delays: Bool, cpu: Int?, echoCPU: Int?) {
    var options = RegionOptions()
    options.inheritable = true
    let request: SharedRegion, response: SharedRegion
    do {
        request = try SharedRegion.createAnonymous(name: "pingpong-request", kind: .spsc, capacity: 64, options: options)
        response = try SharedRegion.createAnonymous(name: "pingpong-response", kind: .spsc, capacity: 64, options: options)
    } catch { fail("\(error)") }
    let (mine, theirs): (FileDescriptor, FileDescriptor)
    var eventFDs: [EventFD] = []
    do {
        (mine, theirs) = try FileDescriptorPassing.socketPair(inheritable: true)
        if kind == "eventfd" { eventFDs = try (0..<4).map { _ throws(DoorbellError) in try EventFD() } }
    } catch { fail("\(error)") }
    do { try mine.setCloseOnExec() } catch { fail("\(error)") }

    // Spawn the echo peer with the region descriptors and one socket inherited.
    let argv =
        [
            CommandLine.arguments[0], "echo", kind, "\(count)", delays ? "1" : "0",
            "\(request.fileDescriptor.rawValue)", "\(response.fileDescriptor.rawValue)", "\(theirs.rawValue)",
        ]
        + (echoCPU.map { ["\($0)"] } ?? [])
    var cargs = argv.map { strdup($0) } + [nil]
    defer { cargs.forEach { free($0) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, "/proc/self/exe", nil, nil, &cargs, environ)
    if rc != 0 { fail("posix_spawn: \(rc)") }
    try? theirs.close()
    pin(cpu)
    do {
        for (tag, e) in eventFDs.enumerated() { try e.send(over: mine, tag: UInt8(tag)) }
    } catch { fail("\(error)") }

    let (requestBell, responseBell) = doorbells(kind, eventFDs)
    var latencies = [UInt64](repeating: 0, count: count)
    var sleeps = 0, spurious = 0
    var rng = SplitMix(state: UInt64(getpid()))
    do {
        var producer = try SPSCProducer<Descriptor>(region: request)
        var consumer = try SPSCConsumer<Descriptor>(region: response)
        for i in 0..<count {
            if delays { randomDelay(&rng) }
            let start = MonotonicClock.now()
            try producer.send(Descriptor(commandID: UInt64(i)), doorbell: requestBell, timeout: roundTripTimeout)
            let wait = try consumer.waitUntilReadable(doorbell: responseBell, timeout: roundTripTimeout)
            guard wait.isReady, let reply = try consumer.dequeue() else {
                fail("round trip \(i): no reply within 10 s (lost wake-up?)")
            }
            try consumer.ringProducers(responseBell)
            latencies[i] = MonotonicClock.now() - start
            sleeps += wait.sleeps
            spurious += wait.spuriousWakeups
            guard reply.commandID == UInt64(i), reply.userData == ~UInt64(i) else {
                fail("round trip \(i): wrong reply \(reply.commandID)")
            }
        }
    } catch { fail("\(error)") }
    var status: Int32 = 0
    waitpid(child, &status, 0)
    if status != 0 { fail("echo peer failed with status \(status)") }
    latencies.sort()
    let p50 = latencies[count / 2], p99 = latencies[min(count - 1, count * 99 / 100)], max = latencies[count - 1]
    print("kind=\(kind) count=\(count) p50_ns=\(p50) p99_ns=\(p99) max_ns=\(max) sleeps=\(sleeps) spurious=\(spurious)")
}

func runEcho(kind: String, count: Int, delays: Bool, requestFD: Int32, responseFD: Int32, socketFD: Int32, cpu: Int?) {
    pin(cpu)
    let socket = FileDescriptor(rawValue: socketFD)
    var eventFDs = [EventFD?](repeating: nil, count: 4)
    do {
        if kind == "eventfd" {
            for _ in 0..<4 {
                let (e, tag) = try EventFD.receive(over: socket)
                guard tag < 4 else { fail("bad tag \(tag)") }
                eventFDs[Int(tag)] = e
            }
        }
        let request = try SharedRegion.attach(fileDescriptor: FileDescriptor(rawValue: requestFD))
        let response = try SharedRegion.attach(fileDescriptor: FileDescriptor(rawValue: responseFD))
        let (requestBell, responseBell) = doorbells(kind, eventFDs.compactMap { $0 })
        var consumer = try SPSCConsumer<Descriptor>(region: request)
        var producer = try SPSCProducer<Descriptor>(region: response)
        var rng = SplitMix(state: UInt64(getpid()) &* 31)
        for _ in 0..<count {
            var d = try consumer.receive(doorbell: requestBell, timeout: roundTripTimeout)
            if delays { randomDelay(&rng) }
            d.userData = ~d.commandID
            try producer.send(d, doorbell: responseBell, timeout: roundTripTimeout)
        }
    } catch { fail("echo: \(error)") }
}
