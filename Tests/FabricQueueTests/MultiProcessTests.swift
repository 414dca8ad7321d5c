import CFabricSystem
import FabricDiagnostics
import FabricQueue
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

/// Real processes sharing real mappings: `fabricq` (the operator tool) and
/// `fabricq-test-helper` spawned with posix_spawn. Every wait has a deadline.
final class MultiProcessTests: XCTestCase {
    private func create(_ kind: RingKind, capacity: Int = 1024) throws -> (String, SharedRegion) {
        let path = temporaryRegionPath(self)
        return (path, try SharedRegion.create(at: FilePath(path), kind: kind, capacity: capacity))
    }

    private func assertCleanReport(
        _ consumer: ChildProcess, received: Int, producers: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertTrue(
            consumer.standardOutput.contains(
                "received \(received) lost 0 duplicated 0 corrupt 0 from \(producers) producer(s)"),
            consumer.standardOutput + consumer.standardError, file: file, line: line)
    }

    func testSPSCTenMillionDescriptorsAcrossProcesses() throws {
        let (path, _) = try create(.spsc)
        let count = "10000000"
        let consumer = try ChildProcess("fabricq", ["consume", path, "--count", count, "--burst", "32", "--timeout", "20"])
        let producer = try ChildProcess("fabricq", ["produce", path, "--count", count, "--burst", "32", "--producer-id", "7"])
        producer.assertSuccess(timeout: 120)
        consumer.assertSuccess(timeout: 120)
        assertCleanReport(consumer, received: 10_000_000, producers: 1)
    }

    func testSPSCOneAtATimeAcrossProcesses() throws {
        let (path, _) = try create(.spsc, capacity: 64)
        let consumer = try ChildProcess("fabricq", ["consume", path, "--count", "500000", "--burst", "1"])
        let producer = try ChildProcess("fabricq", ["produce", path, "--count", "500000"])
        producer.assertSuccess(timeout: 60)
        consumer.assertSuccess(timeout: 60)
        assertCleanReport(consumer, received: 500_000, producers: 1)
    }

    func testMPSCProducerProcessesAndThreads() throws {
        let (path, region) = try create(.mpsc, capacity: 512)
        let perProducer = 300_000
        // 3 producer processes + 1 process with 3 producer threads = 6 producers.
        let total = perProducer * 6
        let consumer = try ChildProcess("fabricq", ["consume", path, "--count", "\(total)", "--burst", "32", "--timeout", "20"])
        var producers: [ChildProcess] = []
        for id in 1...3 {
            producers.append(
                try ChildProcess(
                    "fabricq",
                    [
                        "produce", path, "--count", "\(perProducer)",
                        "--producer-id", "\(id)", "--burst", id == 1 ? "1" : "8",
                    ]))
        }
        producers.append(try ChildProcess("fabricq-test-helper", ["threads-produce", path, "3", "\(perProducer)", "4", "10"]))
        for p in producers { p.assertSuccess(timeout: 120) }
        consumer.assertSuccess(timeout: 120)
        assertCleanReport(consumer, received: total, producers: 6)
        let snapshot = region.snapshot()
        XCTAssertEqual(snapshot.head, UInt64(total))
        XCTAssertEqual(snapshot.tail, UInt64(total))
        XCTAssertEqual(snapshot.unpublished, 0)
    }

    func testProducerKilledMidWriteIsDetectedAndSkipped() throws {
        let (path, region) = try create(.mpsc, capacity: 64)
        let dying = try ChildProcess("fabricq-test-helper", ["reserve-and-die", path])
        guard let status = dying.wait(timeout: 30) else { return XCTFail("helper did not die") }
        XCTAssertEqual(ChildProcess.signal(status), SIGKILL)
        XCTAssertEqual(region.snapshot().unpublished, 1)

        // Another producer is not held back by the dead one's slot.
        let survivor = try ChildProcess("fabricq", ["produce", path, "--count", "40", "--producer-id", "2"])
        survivor.assertSuccess(timeout: 30)

        var consumer = try MPSCConsumer<Descriptor>(region: region, stallTimeout: .milliseconds(50))
        var stall: RingError?
        let deadline = MonotonicClock.now() + 10_000_000_000
        while stall == nil && MonotonicClock.now() < deadline {
            do {
                let d = try consumer.dequeue()
                XCTAssertNil(d)
            } catch { stall = error }
            usleep(1_000)
        }
        guard case .slotStalled(position: 0, _) = stall else {
            return XCTFail("stall not reported: \(String(describing: stall))")
        }
        XCTAssertEqual(consumer.skipStalledSlot(), 0)
        var verifier = StreamVerifier()
        while let d = try consumer.dequeue() { verifier.record(d) }
        XCTAssertEqual(verifier.received, 40)
        XCTAssertTrue(verifier.isClean)
        XCTAssertEqual(verifier.nextSequence, [2: 40])
    }

    func testRoleOfKilledProcessIsTakenOver() throws {
        let (path, region) = try create(.spsc, capacity: 16)
        let holder = try ChildProcess("fabricq-test-helper", ["hold-role", path, "producer"])
        XCTAssertTrue(holder.waitForOutput("ready", timeout: 30), holder.standardError)
        XCTAssertThrowsError(try SPSCProducer<Descriptor>(region: region).capacity) {
            XCTAssertEqual($0 as? RegionError, .endpointInUse(role: "producer", ownerPID: holder.pid))
        }
        holder.terminate()
        let producer = try SPSCProducer<Descriptor>(region: region)
        XCTAssertEqual(producer.tookOverFrom, holder.pid)
        XCTAssertEqual(region.snapshot().producerOwner, getpid())
    }

    func testAnonymousRegionSharedThroughInheritedDescriptor() throws {
        var options = RegionOptions()
        options.inheritable = true
        let region = try SharedRegion.createAnonymous(kind: .spsc, capacity: 256, options: options)
        let fd = "\(region.fileDescriptor.rawValue)"
        let consumer = try ChildProcess("fabricq-test-helper", ["fd-consume", fd, "200000", "16"])
        let producer = try ChildProcess("fabricq-test-helper", ["fd-produce", fd, "200000", "16"])
        producer.assertSuccess(timeout: 60)
        consumer.assertSuccess(timeout: 60)
        XCTAssertTrue(consumer.standardOutput.contains("received 200000"))
        XCTAssertEqual(region.snapshot().tail, 200_000)
    }

    func testPeerScribblingOverIndicesIsReportedNotFollowed() throws {
        let (path, region) = try create(.spsc, capacity: 64)
        let vandal = try ChildProcess("fabricq-test-helper", ["corrupt-head", path, "\(UInt64.max / 3)"])
        vandal.assertSuccess(timeout: 30)
        var consumer = try SPSCConsumer<Descriptor>(region: region)
        XCTAssertThrowsError(try consumer.dequeue()) {
            guard case .indicesCorrupted = $0 as? RingError else { return XCTFail("got \($0)") }
        }
        _ = consume consumer
        // The tools say so in one line and exit 1, never by a signal.
        for args in [["inspect", path], ["consume", path, "--count", "10", "--timeout", "2"]] {
            let tool = try ChildProcess("fabricq", args)
            guard let status = tool.wait(timeout: 30) else { return XCTFail("fabricq \(args) hung") }
            XCTAssertTrue(ChildProcess.exitedNormally(status))
            XCTAssertEqual(ChildProcess.exitCode(status), 1)
            XCTAssertTrue(tool.standardError.contains("corrupt"), tool.standardError)
        }
    }

    func testInspectReportsDamageInOneLineAndNeverCrashes() throws {
        let (good, _) = try create(.mpsc, capacity: 32)
        let json = try ChildProcess("fabricq", ["inspect", good, "--json"])
        json.assertSuccess(timeout: 30)
        let fields = try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any]
        XCTAssertEqual(fields?["kind"] as? String, "mpsc")
        XCTAssertEqual(fields?["capacity"] as? Int, 32)
        XCTAssertEqual(fields?["creatorPID"] as? Int, Int(getpid()))

        let truncated = temporaryRegionPath(self, "truncated")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        try bytes.prefix(2000).write(to: URL(fileURLWithPath: truncated))
        let garbage = temporaryRegionPath(self, "garbage")
        try Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: garbage))
        let cases = [
            (truncated, "truncated"), (garbage, "bad magic"), ("/tmp", "not a regular file"),
            ("/dev/null", "not a regular file"), ("/dev/shm/fq-no-such-region", "No such file"),
        ]
        for (path, message) in cases {
            let tool = try ChildProcess("fabricq", ["inspect", path])
            guard let status = tool.wait(timeout: 30) else { return XCTFail("inspect \(path) hung") }
            XCTAssertTrue(ChildProcess.exitedNormally(status), "inspect \(path) died by signal")
            XCTAssertEqual(ChildProcess.exitCode(status), 1)
            let lines = tool.standardError.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, tool.standardError)
            XCTAssertTrue(tool.standardError.contains(message), "\(path): \(tool.standardError)")
        }
    }

    func testConsumeTimesOutWithoutProducer() throws {
        let (path, _) = try create(.spsc, capacity: 8)
        let consumer = try ChildProcess("fabricq", ["consume", path, "--count", "5", "--timeout", "0.3"])
        guard let status = consumer.wait(timeout: 30) else { return XCTFail("consume ignored its timeout") }
        XCTAssertEqual(ChildProcess.exitCode(status), 1)
        XCTAssertTrue(consumer.standardError.contains("timed out"), consumer.standardError)
        XCTAssertTrue(consumer.standardOutput.contains("received 0"), consumer.standardOutput)
    }

    func testCreateAndRemoveFromTheShell() throws {
        let path = temporaryRegionPath(self, "cli")
        let create = try ChildProcess("fabricq", ["create", path, "--kind", "spsc", "--capacity", "128"])
        create.assertSuccess(timeout: 30)
        XCTAssertEqual(try SharedRegion.attach(at: FilePath(path)).info.capacity, 128)
        let again = try ChildProcess("fabricq", ["create", path, "--kind", "spsc", "--capacity", "128"])
        XCTAssertEqual(again.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(again.standardError.contains("already exists"))
        let bad = try ChildProcess("fabricq", ["create", path + "x", "--kind", "spsc", "--capacity", "100"])
        XCTAssertEqual(bad.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(bad.standardError.contains("not a power of two"))
        try ChildProcess("fabricq", ["remove", path]).assertSuccess(timeout: 30)
        XCTAssertNotEqual(access(path, F_OK), 0)
    }

    func testConsumeSleepsOnFutexDoorbellAndIsWokenByProduce() throws {
        let (path, region) = try create(.mpsc, capacity: 64)
        let consumer = try ChildProcess("fabricq", ["consume", path, "--count", "500", "--doorbell", "futex", "--timeout", "20"])
        // It announces itself as a sleeper instead of spinning.
        let end = MonotonicClock.now() + 10_000_000_000
        while region.snapshot().dataWaiters == 0 && MonotonicClock.now() < end { usleep(1_000) }
        XCTAssertEqual(region.snapshot().dataWaiters, 1, "consumer never went to sleep")
        let producer = try ChildProcess("fabricq", ["produce", path, "--count", "500", "--burst", "4", "--doorbell", "futex"])
        producer.assertSuccess(timeout: 30)
        consumer.assertSuccess(timeout: 30)
        assertCleanReport(consumer, received: 500, producers: 1)
        XCTAssertEqual(region.snapshot().dataWaiters, 0)
    }

    func testCreateOnNUMANodeAndInspectReportsPages() throws {
        let path = temporaryRegionPath(self, "numa")
        let create = try ChildProcess(
            "fabricq", ["create", path, "--kind", "spsc", "--capacity", "1024", "--numa-node", "0", "--prefault"])
        create.assertSuccess(timeout: 30)
        XCTAssertTrue(
            create.standardOutput.contains(NUMA.isAvailable ? "placement: applied (node 0)" : "NUMA unavailable"),
            create.standardOutput)
        let inspect = try ChildProcess("fabricq", ["inspect", path, "--json"])
        inspect.assertSuccess(timeout: 30)
        let fields = try JSONSerialization.jsonObject(with: Data(inspect.standardOutput.utf8)) as? [String: Any]
        let pages = fields?["pagesPerNode"] as? [String: Int]
        XCTAssertEqual(pages?.keys.sorted(), ["0"])
        XCTAssertEqual(pages?["0"], 69632 / 4096)
        XCTAssertEqual(fields?["untouchedPages"] as? Int, 0)
        let bad = try ChildProcess("fabricq", ["create", path + "-bad", "--kind", "spsc", "--capacity", "8", "--numa-node", "7"])
        XCTAssertEqual(bad.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(bad.standardError.contains("NUMA node 7 does not exist"), bad.standardError)
        XCTAssertNotEqual(access(path + "-bad", F_OK), 0)
    }

    /// Regression: a polling producer used to post without ringing, leaving a
    /// consumer that sleeps on the futex asleep with a full ring until its timeout.
    func testSleepingConsumerIsWokenByPollingProducers() throws {
        let (path, _) = try create(.mpsc, capacity: 16)
        let consumer = try ChildProcess(
            "fabricq", ["consume", path, "--count", "40000", "--doorbell", "futex", "--timeout", "5"])
        let producers = try (1...2).map { id in
            try ChildProcess("fabricq", ["produce", path, "--count", "20000", "--producer-id", "\(id)", "--timeout", "5"])
        }
        for p in producers { p.assertSuccess(timeout: 60) }
        consumer.assertSuccess(timeout: 60)
        assertCleanReport(consumer, received: 40000, producers: 2)
    }

    /// Issue 13, item 5: a role's liveness is the kernel's lock, not a pid.
    /// A dead owner whose pid now names a live process (pid reuse) used to
    /// keep its role forever.
    func testADeadOwnersReusedPidDoesNotKeepTheRole() throws {
        let path = temporaryRegionPath(self)
        let region = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 64)
        let reused = getppid()  // alive, and no ring endpoint: what a recycled pid looks like
        region.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(
                of: UInt32(bitPattern: reused), toByteOffset: RegionLayout.controlOffset + RegionLayout.Control.consumerOwner,
                as: UInt32.self)
        }
        let consumer = try SPSCConsumer<Descriptor>(region: region)
        XCTAssertEqual(consumer.tookOverFrom, reused)
        XCTAssertEqual(region.snapshot().consumerOwner, getpid())
    }

    /// Issue 13, item 5: a consumer in another pid namespace (sharing
    /// /dev/shm) records a pid that means nothing here; judged by that pid
    /// it looked dead and a second consumer took over its live role. The
    /// lock says it is alive; once it is killed the role is free at once.
    func testAConsumerInAnotherPidNamespaceKeepsItsRole() throws {
        let path = temporaryRegionPath(self)
        let region = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 64)
        let helper = ChildProcess.executable("fabricq-test-helper")
        let probe = try ChildProcess("/usr/bin/unshare", ["--pid", "--fork", "/bin/true"])
        guard probe.wait(timeout: 20).map({ ChildProcess.exitedNormally($0) && ChildProcess.exitCode($0) == 0 }) == true else {
            throw XCTSkip("cannot create a pid namespace here: \(probe.standardError)")
        }
        let holder = try ChildProcess(
            "/usr/bin/unshare", ["--pid", "--fork", "--kill-child", helper, "hold-role", path, "consumer"])
        XCTAssertTrue(holder.waitForOutput("ready", timeout: 20), holder.standardError)
        let recorded = region.snapshot().consumerOwner
        XCTAssertNotEqual(recorded, holder.pid, "the holder records its pid in its own namespace")
        // Make the recorded pid one that certainly names no process here.
        region.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(
                of: UInt32(0x3FFF_FFF0), toByteOffset: RegionLayout.controlOffset + RegionLayout.Control.consumerOwner,
                as: UInt32.self)
        }
        do {
            _ = try SPSCConsumer<Descriptor>(region: region)
            XCTFail("a second consumer took over a live consumer's role")
        } catch {
            guard case .endpointInUse(role: "consumer", _) = error else { return XCTFail("\(error)") }
        }
        holder.terminate()  // --kill-child: the holder dies with unshare
        let end = Date().addingTimeInterval(5)
        var taken: Int32?? = nil
        while taken == nil && Date() < end {
            if let consumer = try? SPSCConsumer<Descriptor>(region: region) {
                taken = .some(consumer.tookOverFrom)
            } else {
                usleep(5_000)
            }
        }
        XCTAssertEqual(taken, .some(0x3FFF_FFF0), "the role came free when its holder died")
    }

    /// Issue 13, item 6: `inspect` mapped the file's size and touched every
    /// page, so a valid 4 KiB region in a large sparse file allocated the
    /// whole file in tmpfs. It now maps (and touches) what the header describes.
    func testInspectMapsOnlyWhatTheHeaderDescribes() throws {
        let path = temporaryRegionPath(self, "sparse")
        let region = try SharedRegion.create(at: FilePath(path), kind: .spsc, capacity: 16)
        let regionSize = region.info.regionSize
        XCTAssertEqual(truncate(path, 256 << 20), 0)  // 256 MiB, sparse
        let attached = try SharedRegion.attach(at: FilePath(path))
        XCTAssertEqual(attached.mappedSize, regionSize)
        let inspect = try ChildProcess("fabricq", ["inspect", path])
        inspect.assertSuccess(timeout: 30)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertLessThan(
            Int(st.st_blocks) * 512, 1 << 20, "inspect allocated \(Int(st.st_blocks) * 512) bytes of the sparse file")
    }

    /// Issue 13, item 17: the CLI says what a file is and refuses to delete
    /// what is not a region; `create --kind` help lists what it accepts.
    func testCLIRefusesToRemoveNonRegionsAndNamesKinds() throws {
        let path = temporaryRegionPath(self, "text")
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("hello\n".utf8)))
        let inspect = try ChildProcess("fabricq", ["inspect", path])
        XCTAssertEqual(inspect.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(inspect.standardError.contains("not a FabricQueue region"), inspect.standardError)
        let remove = try ChildProcess("fabricq", ["remove", path])
        XCTAssertEqual(remove.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(remove.standardError.contains("not removed"), remove.standardError)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        try ChildProcess("fabricq", ["remove", "--force", path]).assertSuccess(timeout: 30)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        let help = try ChildProcess("fabricq", ["create", "--help"])
        help.assertSuccess(timeout: 30)
        XCTAssertTrue(help.standardOutput.contains("spsc or mpsc"), help.standardOutput)
        XCTAssertFalse(help.standardOutput.contains("values: 1, 2"), help.standardOutput)
    }

    /// Issue 13, item 11: a dead producer's stalled slot stopped `fabricq
    /// consume` (and every consumer after it) for good; `--skip-stalled`
    /// gives the CLI the recovery the library has.
    func testConsumeCanSkipADeadProducersStalledSlot() throws {
        let (path, _) = try create(.mpsc, capacity: 64)
        let dying = try ChildProcess("fabricq-test-helper", ["reserve-and-die", path])
        XCTAssertNotNil(dying.wait(timeout: 30))
        try ChildProcess("fabricq", ["produce", path, "--count", "40", "--producer-id", "2"]).assertSuccess(timeout: 30)
        let stuck = try ChildProcess("fabricq", ["consume", path, "--count", "40", "--timeout", "2"])
        XCTAssertEqual(stuck.wait(timeout: 30).map(ChildProcess.exitCode), 1, "without --skip-stalled the stall is an error")
        XCTAssertTrue(stuck.standardError.contains("reserved but unpublished"), stuck.standardError)
        let recovered = try ChildProcess("fabricq", ["consume", path, "--count", "40", "--skip-stalled", "--timeout", "5"])
        recovered.assertSuccess(timeout: 60)
        XCTAssertTrue(recovered.standardOutput.contains("received 40 lost 0"), recovered.standardOutput)
        XCTAssertTrue(recovered.standardError.contains("skipped 1 stalled slot"), recovered.standardError)
    }
}
