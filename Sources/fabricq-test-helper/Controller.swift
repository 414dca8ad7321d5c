import FabricDiagnostics
import FabricProducer
import Glibc
import SystemPackage

/// `controller SOCKET COUNT MODEL PAYLOAD [UID GID]`: a controller process.
/// Connects, keeps up to 16 commands in flight, checks every output (echo:
/// the payload back; checksum: its FNV-1a), prints "first" after the first
/// completion and "ok N p50=… p99=…" at the end. COUNT 0 runs until killed.
/// A payload larger than a slot travels in a run of slots (and its echo
/// comes back in another). SOCKET may be `ucx://HOST:PORT`, with the key
/// file in `$FABRICQ_KEY`.
func runController(socket: String, count: Int, model: UInt32, payload: Int) {
    var session: ControllerSession
    do {
        let key = try getenv("FABRICQ_KEY").map { try RemoteSigningKey(contentsOf: FilePath(String(cString: $0))) }
        session = try ControllerSession.connect(to: DaemonEndpoint(socket, key: key))
    } catch { fail("connect: \(error)") }
    let outputBytes = model == DiagnosticModel.checksum.rawValue ? 8 : payload
    guard let inputSlots = session.buffers.slotsNeeded(forBytes: payload),
        let outputSlots = session.buffers.slotsNeeded(forBytes: outputBytes),
        inputSlots + outputSlots <= session.buffers.capacity
    else { fail("a \(payload)-byte payload does not fit the session's \(session.buffers.capacity) slots") }
    let window = min(16, session.buffers.capacity / (inputSlots + outputSlots))
    var submitted = 0, completed = 0
    var printedFirst = false
    while count == 0 || completed < count {
        while session.inFlightCount < window && (count == 0 || submitted < count) {
            guard let input = session.buffers.acquire(bytes: payload) else { break }
            guard let output = session.buffers.acquire(bytes: outputBytes) else {
                session.buffers.release(input)
                break
            }
            let bytes = session.buffers.buffer(input)
            let seed = UInt64(submitted) &* 0x9E37_79B9_7F4A_7C15
            for k in 0..<payload { bytes[k] = UInt8(truncatingIfNeeded: (seed >> UInt64((k % 8) * 8)) &+ UInt64(k)) }
            do {
                try session.submit(
                    CommandRequest(
                        modelID: model, input: input, inputSize: payload, output: output,
                        userData: UInt64(submitted)))
            } catch { fail("submit \(submitted): \(error)") }
            submitted += 1
        }
        let done: CommandCompletion
        do { done = try session.waitForCompletion(timeout: .seconds(10)) } catch { fail("completion \(completed): \(error)") }
        guard done.succeeded else { fail("command \(done.commandID) failed: \(done.statusCode) detail \(done.detail)") }
        let input = UnsafeRawBufferPointer(rebasing: session.buffers.buffer(done.input)[0..<payload])
        let output = UnsafeRawBufferPointer(rebasing: session.buffers.buffer(done.output)[0..<done.outputSize])
        switch DiagnosticModel(rawValue: model) {
        case .echo?, .delay?:
            guard output.elementsEqual(input) else { fail("command \(done.commandID): echo mismatch") }
        case .checksum?:
            guard output.count == 8, output.loadUnaligned(as: UInt64.self) == DiagnosticModel.fnv1a(input).littleEndian else {
                fail("command \(done.commandID): checksum mismatch")
            }
        default: break
        }
        session.buffers.release(done.input)
        session.buffers.release(done.output)
        completed += 1
        if !printedFirst {
            printedFirst = true
            line("first")
        }
    }
    let total = session.latency.summary(.total)
    line("ok \(completed) p50=\(total.p50) p99=\(total.p99)")
}

/// `garbage SOCKET`: a controller that speaks the handshake but then posts
/// descriptors that must be refused, prints each completion's status and
/// detail, then scribbles over the submission ring's head and reports whether
/// the daemon dropped the session (closed the socket).
func runGarbage(socket path: String) {
    do {
        let socket = try UnixSocket.connect(to: FilePath(path))
        let grant = try socket.requestSession(timeout: .seconds(5))
        var fds: [UInt8: FileDescriptor] = [:]
        for (tag, fd) in grant.descriptors { fds[tag] = fd }
        guard let s = fds[SessionDescriptorTag.submissionRing.rawValue],
            let c = fds[SessionDescriptorTag.completionRing.rawValue],
            let d = fds[SessionDescriptorTag.dataRegion.rawValue], let e = fds[SessionDescriptorTag.daemonDoorbell.rawValue]
        else {
            fail("grant lacks a descriptor")
        }
        let submissions = try SharedRegion.attach(fileDescriptor: s)
        let completions = try SharedRegion.attach(fileDescriptor: c)
        let data = try DataRegion.attach(fileDescriptor: d)
        let daemonDoorbell = try EventFD(adopting: e)
        var producer = try SPSCProducer<Descriptor>(region: submissions)
        var consumer = try SPSCConsumer<Completion>(region: completions)
        let g = data.geometry
        guard g.slotCount >= 3 else { fail("the garbage scenario needs 3 slots") }
        let slot0 = g.offset(ofSlot: 0), slot1 = g.offset(ofSlot: 1), slot2 = g.offset(ofSlot: 2)
        let last = g.offset(ofSlot: g.slotCount - 1)
        let bad: [(String, Descriptor)] = [
            (
                "unknown-model",
                Descriptor(commandID: 1, modelID: 999, inputOffset: slot0, inputSize: 8, outputOffset: slot1, outputCapacity: 8)
            ),
            (
                "input-past-end",
                Descriptor(
                    commandID: 2, modelID: 1, inputOffset: UInt64.max - 3, inputSize: 64, outputOffset: slot1, outputCapacity: 8)
            ),
            (
                "output-in-header",
                Descriptor(commandID: 3, modelID: 1, inputOffset: slot0, inputSize: 8, outputOffset: 0, outputCapacity: 64)
            ),
            (
                "run-past-last-slot",
                Descriptor(
                    commandID: 4, modelID: 1, inputOffset: last + 8, inputSize: UInt32(g.slotSize), outputOffset: slot0,
                    outputCapacity: 8)
            ),
            (
                "overlap",
                Descriptor(
                    commandID: 5, modelID: 1, inputOffset: slot0, inputSize: 64, outputOffset: slot0 + 32, outputCapacity: 64)
            ),
            (
                "past-last-slot",
                Descriptor(
                    commandID: 6, modelID: 1, inputOffset: last + g.slotSize, inputSize: 1, outputOffset: slot1, outputCapacity: 8
                )
            ),
            (
                "small-output",
                Descriptor(commandID: 7, modelID: 2, inputOffset: slot0, inputSize: 8, outputOffset: slot1, outputCapacity: 4)
            ),
            (
                "valid",
                Descriptor(commandID: 8, modelID: 1, inputOffset: slot0, inputSize: 8, outputOffset: slot1, outputCapacity: 8)
            ),
            (
                // Unaligned, across slots 0 and 1, echoed into slot 2: a run is one buffer.
                "valid-span",
                Descriptor(
                    commandID: 10, modelID: 1, inputOffset: slot0 + 8, inputSize: UInt32(g.slotSize), outputOffset: slot2,
                    outputCapacity: UInt32(g.slotSize))
            ),
        ]
        var opcode = Descriptor(
            commandID: 9, modelID: 1, inputOffset: slot0, inputSize: 8, outputOffset: slot1, outputCapacity: 8)
        opcode.opcode = 7
        let doorbell = Doorbell.eventFD(dataAvailable: daemonDoorbell, spaceAvailable: daemonDoorbell)
        let all = bad + [("opcode", opcode)]
        for (_, descriptor) in all {
            try producer.send(descriptor, doorbell: doorbell, timeout: .seconds(5))
        }
        // Completions arrive in any order: name each by its command id.
        var byID: [UInt64: String] = [:]
        for (name, descriptor) in all { byID[descriptor.commandID] = name }
        var lines: [(UInt64, String)] = []
        for _ in all {
            let completion = try consumer.receive(
                doorbell: .adaptive(spinFor: .microseconds(50), then: .futex), timeout: .seconds(5))
            let name = byID[completion.commandID] ?? "unknown"
            lines.append(
                (
                    completion.commandID,
                    "\(name) \(completion.commandID) status=\(completion.statusCode) detail=\(completion.detail)"
                ))
        }
        for (_, text) in lines.sorted(by: { $0.0 < $1.0 }) { line(text) }
        // Now break the ring itself: a head far beyond the tail.
        submissions.withUnsafeMutableBytes { bytes in
            let head = RegionLayout.controlOffset + RegionLayout.Control.head
            bytes.storeBytes(of: UInt64(1) << 40, toByteOffset: head, as: UInt64.self)
        }
        try producer.ringConsumer(doorbell)
        _ = try? daemonDoorbell.signal()
        let start = MonotonicClock.now()
        while MonotonicClock.now() - start < 5_000_000_000 {
            if socket.peerHasClosed() {
                line("dropped after \((MonotonicClock.now() - start) / 1_000_000) ms")
                return
            }
            usleep(1_000)
        }
        line("not dropped")
    } catch { fail("\(error)") }
}

/// Writes one line to stdout unbuffered (the tests read it while we run).
func line(_ text: String) {
    var text = text + "\n"
    text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}
