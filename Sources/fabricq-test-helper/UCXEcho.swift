import FabricRemote
import FabricSystem
import Glibc

/// `ucx-echo HOST PORT [spin]`: a UCX listener that echoes every active
/// message (id 1: header and data) back on the endpoint it came from, to any
/// number of clients, until killed. Prints "listening PORT" once bound.
/// Sleeps on the worker's event fd when idle, or with `spin` busy-polls it.
func runUCXEcho(host: String, port: UInt16, spin: Bool) {
    do {
        let worker = try UCXWorker()
        guard let address = UCXAddress(host: host, port: port) else { fail("not a numeric address: \(host)") }
        let listener = try UCXListener(worker, on: address)
        var endpoints: [UCXEndpoint] = []
        // Replies are queued by the handler and sent from this loop (no sends inside UCX callbacks).
        var replies: [(sender: OpaquePointer?, header: [UInt8], data: [UInt8])] = []
        try worker.onMessage(1) { message in
            replies.append((message.sender, Array(message.header), Array(message.data)))
        }
        line("listening \(listener.address.port)")
        while true {
            if spin { worker.progress() } else { try worker.wait(timeout: .milliseconds(100)) }
            while let endpoint = listener.accept() { endpoints.append(endpoint) }
            endpoints.removeAll { $0.failure != nil }
            while !replies.isEmpty {
                let reply = replies.removeFirst()
                guard let endpoint = endpoints.first(where: { $0.handle == reply.sender }) else { continue }
                try? reply.header.withUnsafeBytes { header in
                    try reply.data.withUnsafeBytes { data in
                        try endpoint.send(1, header: header, data: data, timeout: .seconds(5))
                    }
                }
            }
        }
    } catch { fail("\(error)") }
}

/// `ucx-ping HOST PORT COUNT SIZE [watch|spin]`: connects to a `ucx-echo`,
/// runs COUNT checked round trips of SIZE bytes one at a time and prints
/// "ok COUNT p50=NS p99=NS". With `watch` it then pings every 20 ms until
/// the peer fails and prints "failed at NS: ERROR" (the monotonic clock,
/// shared by every process on the host). With `spin` it busy-polls the
/// worker instead of sleeping on its event fd.
func runUCXPing(host: String, port: UInt16, count: Int, size: Int, watch: Bool, spin: Bool = false) {
    do {
        let worker = try UCXWorker()
        guard let address = UCXAddress(host: host, port: port) else { fail("not a numeric address: \(host)") }
        let endpoint = try UCXEndpoint.connect(worker, to: address)
        var replies: [(header: [UInt8], data: [UInt8])] = []
        try worker.onMessage(1) { message in replies.append((Array(message.header), Array(message.data))) }
        /// Sends one message and waits up to `timeout` for its echo; false
        /// when none came (late echoes of earlier ones are dropped).
        func roundTrip(_ sequence: Int, size: Int, timeout: Duration) throws -> Bool {
            let header = withUnsafeBytes(of: UInt64(sequence).littleEndian) { Array($0) }
            let data = [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: size)
            try header.withUnsafeBytes { h in
                try data.withUnsafeBytes { d in try endpoint.send(1, header: h, data: d, timeout: .seconds(5)) }
            }
            let end = deadline(after: timeout)
            while endpoint.failure == nil {
                while let reply = replies.first {
                    replies.removeFirst()
                    let echoed =
                        reply.header.count == 8 ? reply.header.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } : .max
                    if echoed < UInt64(sequence) { continue }  // the late echo of an earlier one
                    guard reply.header == header, reply.data == data else { fail("round trip \(sequence): echo differs") }
                    return true
                }
                guard monotonicNanoseconds() < end else { return false }
                if spin { worker.progress() } else { try worker.wait(timeout: .milliseconds(10)) }
            }
            throw endpoint.failure ?? UCXError("peer", status: -1)
        }
        var latencies: [UInt64] = []
        latencies.reserveCapacity(count)
        for sequence in 0..<count {
            let started = monotonicNanoseconds()
            guard try roundTrip(sequence, size: size, timeout: .seconds(5)) else {
                fail("round trip \(sequence): no echo in 5 s")
            }
            latencies.append(monotonicNanoseconds() - started)
        }
        latencies.sort()
        if !latencies.isEmpty {
            line("ok \(count) p50=\(latencies[count / 2]) p99=\(latencies[min(count - 1, count * 99 / 100)])")
        }
        guard watch else { return }
        var sequence = count
        while true {
            do {
                _ = try roundTrip(sequence, size: 64, timeout: .milliseconds(200))
            } catch {
                let peer = (error as? UCXError)?.isPeerFailure == true ? "peer failure" : "other failure"
                line("failed at \(monotonicNanoseconds()): \(peer): \(error)")
                return
            }
            sequence += 1
            let pause = deadline(after: .milliseconds(20))
            while monotonicNanoseconds() < pause && endpoint.failure == nil { try worker.wait(timeout: .milliseconds(5)) }
            if let failure = endpoint.failure {
                line(
                    "failed at \(monotonicNanoseconds()): \(failure.isPeerFailure ? "peer failure" : "other failure"): \(failure)"
                )
                return
            }
        }
    } catch { fail("\(error)") }
}
