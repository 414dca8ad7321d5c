import Foundation
import Glibc
import XCTest

/// A real child process spawned with `posix_spawn`, its output captured to
/// files, always waited for with a deadline (killed with SIGKILL past it).
public final class ChildProcess {
    public let pid: pid_t
    public let name: String
    private let stdoutPath: String
    private let stderrPath: String
    private var exitStatus: Int32?

    /// The directory holding the package's built executables (next to the test bundle).
    public static let productsDirectory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = String(decoding: buffer[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var dir = (exe as NSString).deletingLastPathComponent
        // Swift Testing / XCTest may run from inside the .xctest bundle directory.
        while !dir.isEmpty, dir != "/", !FileManager.default.fileExists(atPath: dir + "/fabricq") {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }()

    public static func executable(_ name: String) -> String { productsDirectory + "/" + name }

    /// Spawns `executable` (a product name or a path) with `arguments`, in
    /// this process's environment plus `environment`.
    /// File descriptors without `FD_CLOEXEC` are inherited.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let path = executable.hasPrefix("/") ? executable : Self.executable(executable)
        name = (path as NSString).lastPathComponent
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        stdoutPath = NSTemporaryDirectory() + "fq-child-\(tag).out"
        stderrPath = NSTemporaryDirectory() + "fq-child-\(tag).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var variables = ProcessInfo.processInfo.environment
        for (key, value) in environment { variables[key] = value }
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, envp)
        guard rc == 0 else {
            XCTFail("posix_spawn \(path): \(String(cString: strerror(rc)))", file: file, line: line)
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO)
        }
        pid = child
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        unlink(stdoutPath)
        unlink(stderrPath)
    }

    /// Waits up to `timeout` seconds; kills the child and returns nil past it.
    /// Otherwise returns the raw wait status.
    @discardableResult
    public func wait(timeout: Double) -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while Date() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                exitStatus = status
                return status
            }
            usleep(2_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        exitStatus = status
        return nil
    }

    /// Waits and asserts a clean exit (status 0) within `timeout`.
    public func assertSuccess(timeout: Double, file: StaticString = #filePath, line: UInt = #line) {
        guard let status = wait(timeout: timeout) else {
            XCTFail("\(name) timed out after \(timeout) s; stderr: \(standardError)", file: file, line: line)
            return
        }
        XCTAssertTrue(
            Self.exitedNormally(status) && Self.exitCode(status) == 0,
            "\(name) failed (status \(status)); stdout: \(standardOutput) stderr: \(standardError)",
            file: file, line: line)
    }

    /// Blocks until the child prints `text` on stdout, or the timeout passes.
    public func waitForOutput(_ text: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if standardOutput.contains(text) { return true }
            usleep(2_000)
        }
        return false
    }

    /// Whether the child is still running (reaps it if it has exited).
    public var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            exitStatus = status
            return false
        }
        return true
    }

    /// Sends SIGTERM and waits up to `timeout` seconds for the child to exit
    /// (then kills it). Returns the wait status, nil if it had to be killed.
    @discardableResult
    public func stop(timeout: Double = 5) -> Int32? {
        if exitStatus == nil { kill(pid, SIGTERM) }
        return wait(timeout: timeout)
    }

    public func terminate() {
        kill(pid, SIGKILL)
        wait(timeout: 5)
    }

    public var standardOutput: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var standardError: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    public static func exitedNormally(_ status: Int32) -> Bool { status & 0x7f == 0 }
    public static func exitCode(_ status: Int32) -> Int32 { (status >> 8) & 0xff }
    public static func signal(_ status: Int32) -> Int32 { status & 0x7f }
}

/// A fresh path under /dev/shm, removed when the test ends.
public func temporaryRegionPath(_ test: XCTestCase, _ name: String = "ring") -> String {
    let path = "/dev/shm/fq-test-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))"
    test.addTeardownBlock { unlink(path) }
    return path
}

/// Number of open file descriptors of this process.
public func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// Waits up to `timeout` seconds for this process to hold `expected` open
/// descriptors (another thread may still be releasing some); returns the
/// last count seen.
public func waitForDescriptorCount(_ expected: Int, timeout: Double) -> Int {
    let end = Date().addingTimeInterval(timeout)
    var count = openDescriptorCount()
    while count != expected && Date() < end {
        usleep(2_000)
        count = openDescriptorCount()
    }
    return count
}
