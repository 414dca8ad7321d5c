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

    /// Typed commands from C (issue 16): `fq_tensor_header_init` for every
    /// element type, a header that lies about its size refused with
    /// `FQ_INVALID_TENSOR_SIZE`, then checked round trips, natively and for
    /// riscv64 under qemu.
    func testCSessionControllerPostsTypedCommandsNativelyAndOnRISCV() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let native = try buildController(cc, extra: ["-std=c11", "-Wextra"], source: "c_session.c")
        let (daemon, socket) = try startDaemon()
        defer { daemon.terminate() }
        for type in ["f32", "f16", "bf16", "i8", "u8"] {
            let run = try ChildProcess(native, [socket, "2000", "300", type])
            run.assertSuccess(timeout: 60)
            XCTAssertTrue(
                run.standardOutput.contains("c_session: 2000 typed round trips ok"), run.standardOutput + run.standardError)
        }
        let unknown = try ChildProcess(native, [socket, "1", "300", "f64"])
        XCTAssertEqual(unknown.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        guard let cross = which("riscv64-linux-gnu-gcc"), let qemu = which("qemu-riscv64") else {
            throw XCTSkip("riscv64 cross tools absent: apt-get install gcc-riscv64-linux-gnu qemu-user (scripts/bootstrap does)")
        }
        let riscv = try buildController(cross, extra: ["-std=c11", "-static"], source: "c_session.c")
        let run = try ChildProcess(qemu, [riscv, socket, "2000", "300", "i8"])
        run.assertSuccess(timeout: 120)
        XCTAssertTrue(run.standardOutput.contains("c_session: 2000 typed round trips ok"), run.standardOutput + run.standardError)
    }

    func testCSessionControllerReportsAnUnreachableDaemon() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc, source: "c_session.c")
        let run = try ChildProcess(controller, ["/nonexistent/fq.sock", "1"])
        XCTAssertEqual(run.wait(timeout: 30).map(ChildProcess.exitCode), 1)
        XCTAssertTrue(run.standardError.contains("/nonexistent/fq.sock"), run.standardError)
    }

    /// Issue 13, item 16: `fabricqueue.h` compiles on its own as the C11 it
    /// claims (it used to need `_GNU_SOURCE` for `syscall` and
    /// `clock_gettime`), natively and for riscv64.
    func testHeaderCompilesAloneAsStrictC11() throws {
        let unit = NSTemporaryDirectory() + "fq-header-\(getpid()).c"
        try "#include \"fabricqueue.h\"\nint main(void) { return (int)(fq_now_ns() & 0u); }\n"
            .write(toFile: unit, atomically: true, encoding: .utf8)
        defer { unlink(unit) }
        var compilers: [String] = []
        if let cc = which("cc") { compilers.append(cc) }
        if let cross = which("riscv64-linux-gnu-gcc") { compilers.append(cross) }
        guard !compilers.isEmpty else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        for compiler in compilers {
            for standard in ["-std=c11", "-std=gnu11"] {
                let build = try ChildProcess(
                    compiler,
                    [
                        standard, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                        "-I", Self.repository + "/Sources/CFabricQueueABI/include", unit,
                    ])
                build.assertSuccess(timeout: 60)
            }
        }
    }

    /// Issue 13, item 16: the C session controller notices a dead daemon
    /// through its socket, as the Swift one does (it used to wait out its
    /// 10 s completion timeout).
    func testCSessionControllerNoticesADeadDaemonThroughItsSocket() throws {
        guard let cc = which("cc") else { throw XCTSkip("no C compiler (scripts/bootstrap installs gcc)") }
        let controller = try buildController(cc, extra: ["-std=c11", "-Wextra"], source: "c_session.c")
        let socket = NSTemporaryDirectory() + "fq-c-dead-\(getpid()).sock"
        let daemon = try ChildProcess("fabricq", ["serve", "--socket", socket])
        defer {
            daemon.terminate()
            unlink(socket)
        }
        XCTAssertTrue(daemon.waitForOutput("listening on", timeout: 20), daemon.standardError)
        let run = try ChildProcess(controller, [socket, "100000000", "8"])
        usleep(300_000)
        let killedAt = Date()
        daemon.terminate()
        let status = try XCTUnwrap(run.wait(timeout: 10), "the C controller did not notice the dead daemon")
        let noticed = Date().timeIntervalSince(killedAt)
        print("measured: C session controller exited \(noticed * 1000) ms after the daemon's SIGKILL")
        XCTAssertEqual(ChildProcess.exitCode(status), 1)
        XCTAssertTrue(run.standardError.contains("daemon gone"), run.standardError)
        XCTAssertLessThan(noticed, 2, "noticed after \(noticed) s")
    }
}
