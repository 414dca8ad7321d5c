import FabricQueue
import FabricTestSupport
import Foundation
import Glibc
import SystemPackage
import XCTest

/// The C controller (`Examples/c-controller`, built on `fabricqueue.h`)
/// posting into regions served by the Swift `fabricq consume`, natively and
/// cross-compiled for riscv64 under qemu-user. The consumer checks every
/// descriptor's checksum and per-producer order, so C and Swift must agree on
/// the layout to the byte.
final class CInteropTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    private func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/\(tool)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// Compiles the C controller with `compiler` into a temporary file.
    private func buildController(_ compiler: String, extra: [String] = [], source: String = "c_controller.c") throws -> String {
        let output = NSTemporaryDirectory() + "c_controller-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        addTeardownBlock { unlink(output) }
        let build = try ChildProcess(
            compiler,
            ["-O2", "-Wall", "-Werror"] + extra + [
                "-I", Self.repository + "/Sources/CFabricQueueABI/include",
                "-o", output, Self.repository + "/Examples/c-controller/" + source,
            ])
        build.assertSuccess(timeout: 120)
        return output
    }

    private func create(_ kind: RingKind, capacity: Int = 1024) throws -> String {
        let path = temporaryRegionPath(self, "c")
        _ = try SharedRegion.create(at: FilePath(path), kind: kind, capacity: capacity)
        return path
    }

    func testNativeCProducerToSwiftConsumer() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc)
        for kind in RingKind.allCases {
            let path = try create(kind, capacity: 64)
            let consumer = try ChildProcess("fabricq", ["consume", path, "--count", "100000", "--doorbell", "futex"])
            let producer = try ChildProcess(controller, [path, "100000", "4"])
            producer.assertSuccess(timeout: 60)
            consumer.assertSuccess(timeout: 60)
            XCTAssertTrue(
                consumer.standardOutput.contains("received 100000 lost 0 duplicated 0 corrupt 0 from 1 producer(s)"),
                "\(kind): " + consumer.standardOutput + consumer.standardError)
        }
    }

    func testMixedCAndSwiftProducersKeepOrderAndLoseNothing() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc)
        let path = try create(.mpsc, capacity: 256)
        let consumer = try ChildProcess("fabricq", ["consume", path, "--count", "400000", "--doorbell", "adaptive"])
        let producers = [
            try ChildProcess(controller, [path, "100000", "1"]),
            try ChildProcess(controller, [path, "100000", "2"]),
            try ChildProcess("fabricq", ["produce", path, "--count", "100000", "--producer-id", "3", "--burst", "8"]),
            try ChildProcess("fabricq", ["produce", path, "--count", "100000", "--producer-id", "4"]),
        ]
        for p in producers { p.assertSuccess(timeout: 120) }
        consumer.assertSuccess(timeout: 120)
        XCTAssertTrue(
            consumer.standardOutput.contains("received 400000 lost 0 duplicated 0 corrupt 0 from 4 producer(s)"),
            consumer.standardOutput + consumer.standardError)
    }

    func testCControllerRefusesADamagedRegion() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc)
        let path = try create(.spsc, capacity: 8)
        let fd = open(path, O_WRONLY)
        var garbage: UInt32 = 7
        XCTAssertEqual(pwrite(fd, &garbage, 4, Int(RegionLayout.Header.capacity)), 4)
        close(fd)
        let run = try ChildProcess(controller, [path, "10", "1"])
        XCTAssertEqual(run.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(run.standardError.contains("header checksum mismatch"), run.standardError)
    }

    func testRISCVControllerUnderQemuAgainstSwiftConsumer() throws {
        guard let cross = which("riscv64-linux-gnu-gcc"), let qemu = which("qemu-riscv64") else {
            throw XCTSkip("riscv64 cross tools absent: apt-get install gcc-riscv64-linux-gnu qemu-user (scripts/bootstrap does)")
        }
        let controller = try buildController(cross, extra: ["-static"])
        let path = try create(.mpsc, capacity: 1024)
        let consumer = try ChildProcess(
            "fabricq", ["consume", path, "--count", "200000", "--doorbell", "futex", "--timeout", "60"])
        let riscv = try ChildProcess(qemu, [controller, path, "100000", "5"])
        let swift = try ChildProcess("fabricq", ["produce", path, "--count", "100000", "--producer-id", "6"])
        riscv.assertSuccess(timeout: 240)
        swift.assertSuccess(timeout: 240)
        consumer.assertSuccess(timeout: 240)
        XCTAssertTrue(
            consumer.standardOutput.contains("received 200000 lost 0 duplicated 0 corrupt 0 from 2 producer(s)"),
            consumer.standardOutput + consumer.standardError)
    }

    /// Starts `fabricq serve` (the Swift daemon) on a fresh socket.
    private func startDaemon() throws -> (ChildProcess, String) {
        let socket = NSTemporaryDirectory() + "fq-c-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        addTeardownBlock { unlink(socket) }
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket, "--slot-size", "4096", "--slots", "16"])
        XCTAssertTrue(daemon.waitForOutput("listening", timeout: 30), daemon.standardError)
        return (daemon, socket)
    }

    func testNativeCSessionControllerRoundTripsThroughTheSwiftDaemon() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc, extra: ["-std=c11", "-Wextra"], source: "c_session.c")
        let (daemon, socket) = try startDaemon()
        defer { daemon.terminate() }
        let run = try ChildProcess(controller, [socket, "100000", "256"])
        run.assertSuccess(timeout: 120)
        XCTAssertTrue(run.standardOutput.contains("c_session: 100000 round trips ok"), run.standardOutput + run.standardError)
        print("measured: native C session: \(run.standardOutput)")
    }

    func testRISCVSessionControllerUnderQemuRoundTripsThroughTheSwiftDaemon() throws {
        guard let cross = which("riscv64-linux-gnu-gcc"), let qemu = which("qemu-riscv64") else {
            throw XCTSkip("riscv64 cross tools absent: apt-get install gcc-riscv64-linux-gnu qemu-user (scripts/bootstrap does)")
        }
        let controller = try buildController(cross, extra: ["-std=c11", "-static"], source: "c_session.c")
        let (daemon, socket) = try startDaemon()
        defer { daemon.terminate() }
        // 100,000 round trips, each checked byte for byte, one command in flight at a time.
        let run = try ChildProcess(qemu, [controller, socket, "100000", "256"])
        run.assertSuccess(timeout: 240)
        XCTAssertTrue(run.standardOutput.contains("c_session: 100000 round trips ok"), run.standardOutput + run.standardError)
        print("measured: riscv64 C session under qemu: \(run.standardOutput)")
    }

    func testCSessionControllerReportsAnUnreachableDaemon() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc, source: "c_session.c")
        let run = try ChildProcess(controller, ["/nonexistent/fq.sock", "1"])
        XCTAssertEqual(run.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(run.standardError.contains("/nonexistent/fq.sock"), run.standardError)
    }
}
