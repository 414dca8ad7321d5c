import CFabricSystem
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
            sendTwoDescriptors(
                extra.fileDescriptor.rawValue, another.fileDescriptor.rawValue, tag: tag, over: connection.fileDescriptor)
        }
        line("sent")
        // Stay until the controller hangs up.
        _ = try? connection.receive(exactly: 1, timeout: .seconds(20))
    } catch { fail("hostile daemon: \(error)") }
}

/// sendmsg(2) of a one-byte `tag` with two descriptors in one SCM_RIGHTS message.
private func sendTwoDescriptors(_ a: Int32, _ b: Int32, tag: UInt8, over socket: FileDescriptor) {
    var byte = tag
    let space = cfq_cmsg_space(8)
    let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
    defer { control.deallocate() }
    control.initializeMemory(as: UInt8.self, repeating: 0, count: space)
    let sent = withUnsafeMutableBytes(of: &byte) { raw -> Int in
        var vector = iovec(iov_base: raw.baseAddress, iov_len: 1)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer -> Int in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = control
            message.msg_controllen = space
            guard let header = cfq_cmsg_firsthdr(&message), let data = cfq_cmsg_data(header) else { return -1 }
            header.pointee.cmsg_level = SOL_SOCKET
            header.pointee.cmsg_type = CFQ_SCM_RIGHTS
            header.pointee.cmsg_len = cfq_cmsg_len(8)
            UnsafeMutableRawPointer(data).storeBytes(of: a, as: Int32.self)
            UnsafeMutableRawPointer(data).storeBytes(of: b, toByteOffset: 4, as: Int32.self)
            return sendmsg(socket.rawValue, &message, CFQ_MSG_NOSIGNAL)
        }
    }
    if sent != 1 { fail("sendmsg failed") }
}
