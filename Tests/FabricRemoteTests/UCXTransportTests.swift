import FabricRemote
import FabricSystem
import FabricTestSupport
import Foundation
import XCTest

/// The UCX layer between real processes: a `fabricq-test-helper ucx-echo`
/// child listens on loopback; this process connects and checks every byte
/// that comes back, then kills the child and times how long the endpoint
/// takes to say so.
final class UCXTransportTests: XCTestCase {
    /// Starts the echo server on 127.0.0.1 (any port) and connects to it.
    private func connectToEcho() throws -> (ChildProcess, UCXWorker, UCXEndpoint) {
        let server = try ChildProcess("fabricq-test-helper", ["ucx-echo", "127.0.0.1", "0"])
        addTeardownBlock { _ = server.stop() }  // signals only a child not yet reaped
        XCTAssertTrue(server.waitForOutput("listening ", timeout: 30), server.standardError)
        let port = try XCTUnwrap(
            server.standardOutput.split(separator: "\n").first { $0.hasPrefix("listening ") }
                .flatMap { UInt16($0.dropFirst("listening ".count)) })
        let worker = try UCXWorker()
        let endpoint = try UCXEndpoint.connect(worker, to: try XCTUnwrap(UCXAddress(host: "127.0.0.1", port: port)))
        return (server, worker, endpoint)
    }

    /// Eager and rendezvous messages (0 B to 300 KB) come back intact and in
    /// order; a 64-byte round trip is timed.
    func testActiveMessagesRoundTripBetweenProcesses() throws {
        let (_, worker, endpoint) = try connectToEcho()
        var received: [(header: [UInt8], data: [UInt8])] = []
        try worker.onMessage(1) { message in received.append((Array(message.header), Array(message.data))) }
        let sizes = [0, 64, 4096, 100_000, 300_000]
        var latencies: [UInt64] = []
        for sequence in 0..<200 {
            let size = sizes[sequence % sizes.count]
            let header = withUnsafeBytes(of: UInt64(sequence).littleEndian) { Array($0) }
            let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ sequence) }
            let started = monotonicNanoseconds()
            try header.withUnsafeBytes { h in
                try data.withUnsafeBytes { d in try endpoint.send(1, header: h, data: d, timeout: .seconds(10)) }
            }
            let deadline = deadline(after: .seconds(10))
            while received.isEmpty && monotonicNanoseconds() < deadline { try worker.wait(timeout: .milliseconds(50)) }
            let reply = try XCTUnwrap(received.first, "no echo for message \(sequence)")
            received.removeFirst()
            if size == 64 { latencies.append(monotonicNanoseconds() - started) }
            XCTAssertEqual(reply.header, header, "message \(sequence): header")
            XCTAssertEqual(reply.data.count, size, "message \(sequence): size")
            XCTAssertTrue(reply.data == data, "message \(sequence): data differs")
        }
        XCTAssertTrue(received.isEmpty, "nothing extra arrived")
        latencies.sort()
        print("measured: UCX loopback 64 B active-message round trip p50 \(latencies[latencies.count / 2] / 1000) µs")
    }

    /// A peer killed with SIGKILL is noticed by the endpoint within a
    /// second, and sends fail with a typed error instead of hanging.
    func testAKilledPeerIsNoticedWithinASecond() throws {
        let (server, worker, endpoint) = try connectToEcho()
        try [UInt8](repeating: 7, count: 64).withUnsafeBytes { d in
            try endpoint.send(1, header: UnsafeRawBufferPointer(start: nil, count: 0), data: d, timeout: .seconds(10))
        }
        kill(server.pid, SIGKILL)
        let killed = monotonicNanoseconds()
        _ = server.wait(timeout: 10)
        while endpoint.failure == nil && monotonicNanoseconds() - killed < 5_000_000_000 {
            try worker.wait(timeout: .milliseconds(20))
        }
        let noticed = monotonicNanoseconds() - killed
        let failure = try XCTUnwrap(endpoint.failure, "the endpoint never noticed")
        XCTAssertTrue(failure.isPeerFailure, "\(failure)")
        XCTAssertLessThan(noticed, 1_000_000_000)
        print("measured: UCX noticed a killed peer after \(noticed / 1_000_000) ms (\(failure))")
        XCTAssertThrowsError(
            try [UInt8](repeating: 7, count: 64).withUnsafeBytes { d in
                try endpoint.send(1, header: UnsafeRawBufferPointer(start: nil, count: 0), data: d, timeout: .seconds(5))
            })
    }

    /// A peer that stops taking data (SIGSTOP) makes a large send time
    /// out: the send returns within its timeout plus the purge, and the
    /// endpoint is failed instead of left hanging.
    func testASendToAStalledPeerFailsWithinItsTimeout() throws {
        let (server, worker, endpoint) = try connectToEcho()
        let large = [UInt8](repeating: 1, count: 8 << 20)
        try large.withUnsafeBytes { d in
            try endpoint.send(1, header: UnsafeRawBufferPointer(start: nil, count: 0), data: d, timeout: .seconds(10))
        }
        kill(server.pid, SIGSTOP)
        defer { kill(server.pid, SIGCONT) }
        let started = monotonicNanoseconds()
        var failed: UCXError?
        for _ in 0..<8 where failed == nil {
            do {
                try large.withUnsafeBytes { d in
                    try endpoint.send(
                        1, header: UnsafeRawBufferPointer(start: nil, count: 0), data: d, timeout: .milliseconds(300))
                }
            } catch { failed = error as? UCXError ?? UCXError("send", status: -1) }
        }
        let elapsed = monotonicNanoseconds() - started
        let error = try XCTUnwrap(failed, "eight 8 MB sends to a stopped peer all completed")
        XCTAssertEqual(error.status, UCXError.timedOut("").status, "\(error)")
        XCTAssertNotNil(endpoint.failure, "the endpoint is failed after a send timed out")
        XCTAssertLessThan(elapsed, 8 * 1_300_000_000)
        XCTAssertThrowsError(
            try large.withUnsafeBytes { d in
                try endpoint.send(1, header: UnsafeRawBufferPointer(start: nil, count: 0), data: d, timeout: .seconds(1))
            })
        _ = worker
    }

    func testAddressesAreNumeric() {
        XCTAssertEqual(UCXAddress(host: "10.1.2.3", port: 7)?.description, "10.1.2.3:7")
        XCTAssertEqual(UCXAddress(host: "::1", port: 9)?.description, "[::1]:9")
        XCTAssertNil(UCXAddress(host: "localhost", port: 1), "names are not resolved")
        XCTAssertNil(UCXAddress(host: "10.1.2", port: 1))
    }

    func testListeningOnAnAddressNotOnThisHostIsATypedError() throws {
        let worker = try UCXWorker()
        XCTAssertThrowsError(try UCXListener(worker, on: XCTUnwrap(UCXAddress(host: "192.0.2.77", port: 0)))) {
            XCTAssertTrue($0 is UCXError, "\($0)")
        }
    }
}

/// UCX over TCP between two network namespaces (a veth pair: the closest
/// this machine has to two hosts). Needs root; skips otherwise.
final class UCXBetweenNamespacesTests: XCTestCase {
    /// Only TCP, as between hosts (both namespaces share this host's memory:
    /// UCX would otherwise pick shared memory).
    let tcpOnly = ["UCX_TLS": "tcp"]

    private func startEcho(_ pair: NetworkNamespacePair) throws -> (ChildProcess, UInt16) {
        let server = try pair.spawn(
            in: pair.serverNamespace, "fabricq-test-helper", ["ucx-echo", pair.serverAddress, "0"], environment: tcpOnly)
        XCTAssertTrue(server.waitForOutput("listening ", timeout: 30), server.standardError)
        let port = try XCTUnwrap(
            server.standardOutput.split(separator: "\n").first { $0.hasPrefix("listening ") }
                .flatMap { UInt16($0.dropFirst("listening ".count)) })
        return (server, port)
    }

    /// 20,000 checked 64-byte round trips and 100 of 200 KB (rendezvous).
    func testActiveMessagesRoundTripBetweenNamespaces() throws {
        let pair = try NetworkNamespacePair()
        defer { pair.remove() }
        let (server, port) = try startEcho(pair)
        defer { _ = server.stop() }
        for (count, size) in [(20_000, 64), (100, 200_000)] {
            let client = try pair.spawn(
                in: pair.clientNamespace, "fabricq-test-helper",
                ["ucx-ping", pair.serverAddress, "\(port)", "\(count)", "\(size)"], environment: tcpOnly)
            client.assertSuccess(timeout: 120)
            XCTAssertTrue(client.standardOutput.contains("ok \(count) "), client.standardOutput + client.standardError)
            print("measured: UCX TCP between namespaces, \(size) B: \(client.standardOutput)")
        }
    }

    /// A server killed with SIGKILL in the other namespace is noticed by
    /// the client's endpoint within a second.
    func testAKilledRemotePeerIsNoticedWithinASecond() throws {
        let pair = try NetworkNamespacePair()
        defer { pair.remove() }
        let (server, port) = try startEcho(pair)
        let client = try pair.spawn(
            in: pair.clientNamespace, "fabricq-test-helper",
            ["ucx-ping", pair.serverAddress, "\(port)", "100", "64", "watch"], environment: tcpOnly)
        XCTAssertTrue(client.waitForOutput("ok 100", timeout: 60), client.standardOutput + client.standardError)
        let killed = monotonicNanoseconds()
        kill(server.pid, SIGKILL)
        _ = server.wait(timeout: 10)
        XCTAssertTrue(client.waitForOutput("failed at ", timeout: 10), client.standardOutput + client.standardError)
        let line = try XCTUnwrap(client.standardOutput.split(separator: "\n").first { $0.hasPrefix("failed at ") })
        let noticed = try XCTUnwrap(UInt64(line.dropFirst("failed at ".count).prefix { $0.isNumber }))
        XCTAssertGreaterThan(noticed, killed)
        XCTAssertLessThan(noticed - killed, 1_000_000_000, String(line))
        XCTAssertTrue(line.contains(": peer failure: "), String(line))
        print("measured: killed UCX peer noticed across namespaces after \((noticed - killed) / 1_000_000) ms: \(line)")
        _ = client.wait(timeout: 10)
    }
}
