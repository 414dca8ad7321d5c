import FabricQueue
import FabricSession
import FabricSystem
import Glibc
import SystemPackage

/// A session obtained with the raw handshake: its granted descriptors by tag.
struct RawSession: ~Copyable {
    let socket: UnixSocket
    let descriptors: [UInt8: FileDescriptor]

    init(socket path: String) {
        do {
            let socket = try UnixSocket.connect(to: FilePath(path))
            let grant = try socket.requestSession(timeout: .seconds(5))
            var byTag: [UInt8: FileDescriptor] = [:]
            for (tag, fd) in grant.descriptors { byTag[tag] = fd }
            self.socket = socket
            descriptors = byTag
        } catch { fail("session: \(error)") }
    }

    func descriptor(_ tag: SessionDescriptorTag) -> FileDescriptor {
        guard let fd = descriptors[tag.rawValue] else { fail("grant lacks \(tag)") }
        return fd
    }

    func region(_ tag: SessionDescriptorTag) -> SharedRegion {
        do { return try SharedRegion.attach(fileDescriptor: descriptor(tag)) } catch { fail("\(tag): \(error)") }
    }
}

/// `poison-doorbells SOCKET SECONDS`: a controller that stores nonsense into
/// its own session's doorbell words (waiter counts and futex words of both
/// rings, both directions): 0xFFFFFFFF, then 0, alternating, for SECONDS.
/// The daemon wraps every arithmetic on these words, so this may cost only
/// this session wake-ups; it must never trap. Prints "done".
func runPoisonDoorbells(socket path: String, seconds: Int) {
    let session = RawSession(socket: path)
    let rings = [session.region(.submissionRing), session.region(.completionRing)]
    let words = [
        RegionLayout.Control.dataWaiters, RegionLayout.Control.spaceWaiters,
        RegionLayout.Control.dataAvailableFutex, RegionLayout.Control.spaceAvailableFutex,
    ]
    ready()
    let end = monotonicNanoseconds() &+ UInt64(seconds) &* 1_000_000_000
    var value: UInt32 = 0xFFFF_FFFF
    while monotonicNanoseconds() < end {
        for region in rings {
            region.withUnsafeMutableBytes { bytes in
                for offset in words {
                    bytes.storeBytes(of: value, toByteOffset: RegionLayout.controlOffset + offset, as: UInt32.self)
                }
            }
        }
        // Wake the daemon so it runs its announce/withdraw/ring paths on the poisoned words.
        try? EventCounter.add(1, to: session.descriptor(.daemonDoorbell))
        value = value == 0 ? 0xFFFF_FFFF : 0
        usleep(200)
    }
    line("done")
}

/// `drain-doorbell SOCKET SECONDS`: a controller that reads its daemon
/// doorbell eventfd as fast as it can for SECONDS, consuming every wake-up
/// sent to that eventfd. With one eventfd per session it can only take its
/// own. Prints "drained N".
func runDrainDoorbell(socket path: String, seconds: Int) {
    let session = RawSession(socket: path)
    let doorbell = session.descriptor(.daemonDoorbell)
    ready()
    let end = monotonicNanoseconds() &+ UInt64(seconds) &* 1_000_000_000
    var drained: UInt64 = 0
    while monotonicNanoseconds() < end {
        if (try? Poll.waitReadable(doorbell, timeoutNanoseconds: 10_000_000)) == true {
            drained &+= (try? EventCounter.take(from: doorbell)) ?? 0
        }
    }
    line("drained \(drained)")
}

/// `hostile-daemon SOCKET`: a "daemon" that accepts one controller, answers
/// its hello with an accepted reply announcing five descriptors, then sends
/// every message with two descriptors attached instead of one. A controller
/// must refuse the grant and close every descriptor the kernel installed.
/// Prints "listening", then "sent" once it has sent its messages.
func runHostileDaemon(socket path: String) {
    do {
        let listener = try UnixSocket.listen(at: FilePath(path), replaceStale: true)
        line("listening")
        guard let connection = try listener.accept(timeout: .seconds(20)) else { fail("nobody connected") }
        _ = try connection.receive(exactly: SessionHandshake.helloSize, timeout: .seconds(10))
        var reply = [UInt8](repeating: 0, count: SessionHandshake.replySize)
        reply.withUnsafeMutableBytes { b in
            b.storeBytes(of: SessionHandshake.replyMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: SessionHandshake.protocolVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            b.storeBytes(of: UInt64(1).littleEndian, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: UInt32(5).littleEndian, toByteOffset: 24, as: UInt32.self)
        }
        try connection.send(reply)
        let extra = try EventFD(), another = try EventFD()
        for tag in 1...5 as ClosedRange<UInt8> {
            try DescriptorPassing.send(
                descriptors: [extra.fileDescriptor.rawValue, another.fileDescriptor.rawValue], tag: tag,
                over: connection.fileDescriptor)
        }
        line("sent")
        // Stay until the controller hangs up.
        _ = try? connection.receive(exactly: 1, timeout: .seconds(20))
    } catch { fail("hostile daemon: \(error)") }
}
