// fabricq-test-helper: scenarios the multi-process tests run in real child
// processes. Not a product; invoked only by the test suite.
//
//   threads-produce PATH THREADS COUNT BURST FIRST_ID   MPSC producers on threads
//   fd-produce FD COUNT BURST                         produce into an inherited memfd
//   fd-consume FD COUNT BURST                         consume from an inherited memfd
//   reserve-and-die PATH                              reserve an MPSC slot, then SIGKILL self
//   hold-role PATH producer|consumer                  claim a role, print "ready", sleep
//   corrupt-head PATH VALUE                           write garbage into the shared head
//   raw-produce PATH COUNT BURST [PRODUCER_ID]        unchecked traffic, for throughput
//   raw-consume PATH COUNT BURST                      unchecked traffic; prints M/s
//   pingpong KIND COUNT DELAYS                        round trips to a spawned echo peer (PingPong.swift)
//   controller SOCKET COUNT MODEL PAYLOAD [UID GID]   a checked controller session (Controller.swift)
//   garbage SOCKET                                    bad descriptors, then corrupt ring indices
//   poison-doorbells SOCKET SECONDS                   nonsense in its own doorbell words (Hostile.swift)
//   drain-doorbell SOCKET SECONDS                     read its daemon eventfd as fast as it can
//   await-verdict SOCKET UID GID                      connect as UID/GID, send nothing, print the reply
//   hostile-daemon SOCKET                             grant descriptors two per message (Hostile.swift)
//   mpsc-instructions COUNT BURST                     one thread: MPSC enqueue/dequeue bursts, for callgrind
//   serve-models SOCKET SPEC...                       a daemon with `--model` specs and misbehaving kinds (ServeModels.swift)
//   ucx-echo HOST PORT                                a UCX listener echoing active messages (UCXEcho.swift)
//   ucx-ping HOST PORT COUNT SIZE [watch]             checked round trips to ucx-echo; watch: until it fails

import FabricDiagnostics
import FabricQueue
import FabricSession
import FabricSystem
import Glibc
import Synchronization
import SystemPackage

func fail(_ message: String) -> Never {
    var line = "fabricq-test-helper: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

let args = CommandLine.arguments
guard args.count >= 2 else { fail("usage: see the comment at the top of main.swift") }
func arg(_ i: Int) -> String {
    guard i < args.count else { fail("missing argument \(i)") }
    return args[i]
}
func int(_ i: Int) -> Int {
    guard let value = Int(arg(i)) else { fail("argument \(i) is not an integer: \(arg(i))") }
    return value
}
/// Drops to `uid`/`gid` (group first, while still permitted) to act as another user.
func becomeUser(uid: UInt32, gid: UInt32) {
    do {
        if getegid() != gid { _ = try systemCall("setgid") { setgid(gid) } }
        if geteuid() != uid { _ = try systemCall("setuid") { setuid(uid) } }
    } catch { fail("\(error)") }
}

func ready() {
    var line = "ready\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}
let timeout: UInt64 = 20_000_000_000

func attach(_ path: String) -> SharedRegion {
    do { return try SharedRegion.attach(at: FilePath(path)) } catch { fail("\(path): \(error)") }
}
func attachFD(_ fd: Int) -> SharedRegion {
    do { return try SharedRegion.attach(fileDescriptor: FileDescriptor(rawValue: Int32(fd))) } catch {
        fail("fd \(fd): \(error)")
    }
}

switch arg(1) {
case "serve-models":
    serveModels(socket: arg(2), specifications: Array(args.dropFirst(3)))
case "threads-produce":
    let region = attach(arg(2))
    let threads = int(3), count = int(4), burst = int(5), firstID = int(6)
    final class Failures: Sendable { let count = Atomic<Int>(0) }
    let failures = Failures()
    runOnThreads(
        (0..<threads).map { t in
            { @Sendable in
                do {
                    var producer = try MPSCProducer<Descriptor>(region: region)
                    try TrafficRunner.produce(
                        into: &producer, producerID: UInt32(firstID + t), count: count,
                        burst: burst, idleTimeoutNanoseconds: timeout)
                } catch {
                    // Relaxed: a counter read after the threads are joined.
                    failures.count.add(1, ordering: .relaxed)
                }
            }
        })
    // Relaxed: the threads have been joined.
    if failures.count.load(ordering: .relaxed) != 0 { fail("a producer thread timed out") }

case "fd-produce":
    let region = attachFD(int(2))
    do {
        var producer = try SPSCProducer<Descriptor>(region: region)
        try TrafficRunner.produce(into: &producer, producerID: 9, count: int(3), burst: int(4), idleTimeoutNanoseconds: timeout)
    } catch { fail("\(error)") }

case "fd-consume":
    let region = attachFD(int(2))
    var verifier = StreamVerifier()
    do {
        var consumer = try SPSCConsumer<Descriptor>(region: region)
        try TrafficRunner.consume(
            from: &consumer, count: int(3), burst: int(4), idleTimeoutNanoseconds: timeout, verifier: &verifier)
    } catch { fail("\(error)") }
    if !verifier.isClean { fail("lost \(verifier.lost) duplicated \(verifier.duplicated) corrupt \(verifier.corrupt)") }
    print("received \(verifier.received)")

case "reserve-and-die":
    let region = attach(arg(2))
    do {
        var producer = try MPSCProducer<Descriptor>(region: region)
        let reservation = producer.reserve(upTo: 1)
        if reservation.count != 1 { fail("ring full") }
        reservation.write(CheckedTraffic.descriptor(producer: 99, sequence: 0), at: 0)
        // Die between reserving and publishing, like a crash mid-write.
        raise(SIGKILL)
        producer.commit(reservation)
    } catch { fail("\(error)") }

case "hold-role":
    let region = attach(arg(2))
    do {
        if arg(3) == "producer" {
            let producer = try SPSCProducer<Descriptor>(region: region)
            ready()
            sleep(60)
            _ = producer
        } else {
            let consumer = try SPSCConsumer<Descriptor>(region: region)
            ready()
            sleep(60)
            _ = consumer
        }
    } catch { fail("\(error)") }

case "corrupt-head":
    // A misbehaving peer: scribble over the producer index in the shared block.
    let region = attach(arg(2))
    guard let value = UInt64(arg(3)) else { fail("bad value") }
    region.withUnsafeMutableBytes { bytes in
        bytes.storeBytes(of: value, toByteOffset: RegionLayout.controlOffset + RegionLayout.Control.head, as: UInt64.self)
    }

case "raw-produce":
    do {
        try rawProduce(
            region: attach(arg(2)), count: int(3), burst: max(1, int(4)),
            producerID: args.count > 5 ? UInt32(int(5)) : 0)
    } catch { fail("\(error)") }

case "raw-consume":
    do {
        let rate = try rawConsume(region: attach(arg(2)), count: int(3), burst: max(1, int(4)))
        print("\(rate)")
    } catch { fail("\(error)") }

case "connect-as":
    // connect-as SOCKET UID GID: drop to UID/GID, connect, send "hello", print the
    // 2-byte reply, then wait for the server to close.
    let uid = UInt32(int(3)), gid = UInt32(int(4))
    becomeUser(uid: uid, gid: gid)
    do {
        let socket = try UnixSocket.connect(to: FilePath(arg(2)))
        try socket.send(Array("hello".utf8))
        let reply = try socket.receive(exactly: 2, timeout: .seconds(10))
        print("reply \(String(decoding: reply, as: UTF8.self))")
        _ = try? socket.receive(exactly: 1, timeout: .seconds(10))
    } catch { fail("\(error)") }

case "session-client":
    // session-client SOCKET VERSION UID GID: request a session; on success attach the
    // granted region (tag 0) and signal the granted eventfd (tag 1).
    let uid = UInt32(int(4)), gid = UInt32(int(5))
    becomeUser(uid: uid, gid: gid)
    do {
        let socket = try UnixSocket.connect(to: FilePath(arg(2)))
        let grant = try socket.requestSession(timeout: .seconds(10), version: UInt32(int(3)))
        var line = "granted session \(grant.sessionID) with \(grant.descriptors.count) descriptors"
        for (tag, fd) in grant.descriptors {
            if tag == 0 {
                let region = try SharedRegion.attach(fileDescriptor: fd)
                line += "; region capacity \(region.info.capacity)"
                try? fd.close()
            } else if tag == 1 {
                try EventFD(adopting: fd).signal(7)
                line += "; eventfd signalled"
            }
        }
        print(line)
    } catch { fail("\(error)") }

case "poison-doorbells":
    runPoisonDoorbells(socket: arg(2), seconds: int(3))

case "drain-doorbell":
    runDrainDoorbell(socket: arg(2), seconds: int(3))

case "mpsc-instructions":
    // Deterministic work for `valgrind --tool=callgrind`: COUNT descriptors
    // through an MPSC ring, BURST at a time, enqueue then dequeue on one
    // thread (nothing spins). Beside Benchmarks/CReference/mpsc_instructions.c.
    do {
        let region = try SharedRegion.createAnonymous(kind: .mpsc, capacity: 1024)
        try countMPSCInstructions(region: region, count: int(2), burst: max(1, min(int(3), 64)))
    } catch { fail("\(error)") }

case "hostile-daemon":
    runHostileDaemon(socket: arg(2))

case "await-verdict":
    // Connect without sending a hello and print the daemon's reply: a peer the
    // policy refuses is answered at accept, before it says anything.
    becomeUser(uid: UInt32(int(3)), gid: UInt32(int(4)))
    do {
        let socket = try UnixSocket.connect(to: FilePath(arg(2)))
        let reply = try socket.receive(exactly: SessionHandshake.replySize, timeout: .seconds(10))
        let status = reply.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
        let reason = String(decoding: reply[32..<64].prefix { $0 != 0 }, as: UTF8.self)
        line("status \(status) reason \(reason)")
    } catch { fail("\(error)") }

case "pingpong":
    runPingPong(
        kind: arg(2), count: int(3), delays: int(4) != 0,
        cpu: args.count > 6 ? int(5) : nil, echoCPU: args.count > 6 ? int(6) : nil)

case "echo":
    runEcho(
        kind: arg(2), count: int(3), delays: int(4) != 0,
        requestFD: Int32(int(5)), responseFD: Int32(int(6)), socketFD: Int32(int(7)),
        cpu: args.count > 8 ? int(8) : nil)

case "controller":
    // controller SOCKET COUNT MODEL PAYLOAD [UID GID] (Controller.swift)
    if args.count > 7 { becomeUser(uid: UInt32(int(6)), gid: UInt32(int(7))) }
    runController(socket: arg(2), count: int(3), model: UInt32(int(4)), payload: int(5))

case "garbage":
    // garbage SOCKET (Controller.swift)
    runGarbage(socket: arg(2))

case "ucx-echo":
    runUCXEcho(host: arg(2), port: UInt16(clamping: int(3)), spin: args.count > 4 && arg(4) == "spin")

case "ucx-ping":
    runUCXPing(
        host: arg(2), port: UInt16(clamping: int(3)), count: int(4), size: int(5), watch: args.count > 6 && arg(6) == "watch",
        spin: args.count > 6 && arg(6) == "spin")

case "remote-replay":
    // remote-replay URL KEYFILE (RemoteHandshakes.swift)
    runRemoteReplay(url: arg(2), keyFile: arg(3))

case "session-pingpong":
    // session-pingpong ENDPOINT COUNT MODEL [adaptive|sleep|spin] (RemoteHandshakes.swift)
    runSessionPingPong(
        endpoint: arg(2), count: int(3), model: UInt32(int(4)),
        wait: CommandLine.arguments.count > 5 ? CommandLine.arguments[5] : "adaptive")

case "remote-oversized":
    // remote-oversized URL (RemoteHandshakes.swift)
    runRemoteOversized(url: arg(2))

case "remote-unauthenticated":
    // remote-unauthenticated URL (RemoteHandshakes.swift)
    runRemoteUnauthenticated(url: arg(2))

default:
    fail("unknown scenario \(arg(1))")
}
