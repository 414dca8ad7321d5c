import FabricProducer
import FabricQueue
import FabricRemote
import FabricSystem
import Glibc
import SystemPackage

/// `remote-replay URL KEYFILE`: a handshake an attacker recorded, played
/// again. Runs one honest handshake with the key (printing "admitted"),
/// keeps its proof, then connects again and answers the new challenge with
/// the old proof; prints "refused: REASON" when the daemon refuses it.
func runRemoteReplay(url: String, keyFile: String) {
    guard let address = UCXAddress(url: url) else { fail("not ucx://HOST:PORT: \(url)") }
    let key: RemoteSigningKey
    do { key = try RemoteSigningKey(contentsOf: FilePath(keyFile)) } catch { fail("\(error)") }
    let recorded: [UInt8]
    do {
        let link = try RemoteLink.connect(to: address)
        try link.send(.hello, bytes: RemoteHandshake.hello(key: key.publicKey))
        recorded = try RemoteHandshake.proof(answering: try link.receive(.challenge, timeout: .seconds(5)), key: key)
        try link.send(.proof, bytes: recorded)
        _ = try RemoteHandshake.grant(inVerdict: try link.receive(.verdict, timeout: .seconds(5)))
        line("admitted")
        link.close()
    } catch { fail("honest handshake: \(error)") }
    do {
        let link = try RemoteLink.connect(to: address)
        try link.send(.hello, bytes: RemoteHandshake.hello(key: key.publicKey))
        _ = try link.receive(.challenge, timeout: .seconds(5))
        try link.send(.proof, bytes: recorded)
        _ = try RemoteHandshake.grant(inVerdict: try link.receive(.verdict, timeout: .seconds(5)))
        fail("the replayed proof was admitted")
    } catch {
        if case .rejected? = error as? RemoteLinkError { line("refused: \(error)") } else { fail("replay: \(error)") }
    }
}

/// `remote-unauthenticated URL`: a peer that skips the handshake and sends
/// a command at once; prints "refused: REASON" when the daemon refuses it.
func runRemoteUnauthenticated(url: String) {
    guard let address = UCXAddress(url: url) else { fail("not ucx://HOST:PORT: \(url)") }
    do {
        let link = try RemoteLink.connect(to: address)
        var descriptor = Descriptor(commandID: 1, modelID: 1)
        try withUnsafeBytes(of: &descriptor) { (header) throws(RemoteLinkError) in try link.send(.command, header: header) }
        let answer = try link.receive(.challenge, timeout: .seconds(5))
        _ = try RemoteHandshake.proof(answering: answer, key: .generate())
        fail("the daemon sent a challenge after a command")
    } catch {
        if case .rejected? = error as? RemoteLinkError { line("refused: \(error)") } else { fail("unauthenticated: \(error)") }
    }
}

/// `session-pingpong ENDPOINT COUNT MODEL [WAIT]`: one command in flight at
/// a time (no input, no output: the empty model's round trip), COUNT of
/// them after 1,000 of warm-up, through a ControllerSession at ENDPOINT (a
/// socket path or `ucx://HOST:PORT` with `$FABRICQ_KEY`). WAIT is how the
/// controller waits: `adaptive` (the default options: spin 20 µs, then
/// sleep), `sleep` (never spins) or `spin` (busy-polls). Prints
/// "ok COUNT p50=NS p99=NS max=NS daemon_p50=NS", the last the median time
/// from the command's arrival at the daemon to its handler's end.
func runSessionPingPong(endpoint: String, count: Int, model: UInt32, wait: String) {
    var session: ControllerSession
    var options = ControllerOptions()
    switch wait {
    case "adaptive": break
    case "sleep": options.wait = .futex
    case "spin": options.wait = .busyPoll
    default: fail("WAIT is adaptive, sleep or spin, not \(wait)")
    }
    do {
        let key = try getenv("FABRICQ_KEY").map { try RemoteSigningKey(contentsOf: FilePath(String(cString: $0))) }
        session = try ControllerSession.connect(to: DaemonEndpoint(endpoint, key: key), options: options)
    } catch { fail("connect: \(error)") }
    guard let input = session.buffers.acquire(), let output = session.buffers.acquire() else { fail("no slots") }
    let request = CommandRequest(modelID: model, input: input, inputSize: 0, output: output)
    var times = [UInt64](repeating: 0, count: count)
    var inDaemon = [UInt64](repeating: 0, count: count)
    for n in -1000..<count {
        let started = MonotonicClock.now()
        let done: CommandCompletion
        do {
            try session.submit(request)
            done = try session.waitForCompletion(timeout: .seconds(10))
            guard done.succeeded else { fail("command \(n): status \(done.statusCode)") }
        } catch { fail("command \(n): \(error)") }
        guard n >= 0 else { continue }
        times[n] = MonotonicClock.now() - started
        // Submitted (for a remote daemon: arrived there) to handler done, on the daemon.
        let t = done.timings
        inDaemon[n] = t.handlerFinished >= t.submitted ? t.handlerFinished - t.submitted : 0
    }
    times.sort()
    inDaemon.sort()
    line(
        "ok \(count) p50=\(times[count / 2]) p99=\(times[count * 99 / 100]) max=\(times[count - 1]) "
            + "daemon_p50=\(inDaemon[count / 2])")
}

/// `remote-oversized URL`: a peer that sends a hello claiming 8 MiB (by
/// rendezvous) and then a command of 8 MiB before any handshake; prints
/// "refused: REASON" when the daemon refuses it without fetching either.
func runRemoteOversized(url: String) {
    guard let address = UCXAddress(url: url) else { fail("not ucx://HOST:PORT: \(url)") }
    do {
        let link = try RemoteLink.connect(to: address)
        let big = [UInt8](repeating: 0x5A, count: 8 << 20)
        // The daemon refuses the transfer: this send may fail, which is the point.
        try? link.send(.hello, bytes: big)
        let answer = try link.receive(.challenge, timeout: .seconds(5))
        _ = try RemoteHandshake.proof(answering: answer, key: .generate())
        fail("the daemon sent a challenge after an oversized hello")
    } catch {
        if case .rejected? = error as? RemoteLinkError { line("refused: \(error)") } else { fail("oversized: \(error)") }
    }
}
