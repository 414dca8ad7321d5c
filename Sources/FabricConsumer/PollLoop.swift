import FabricSession
import FabricSystem
import Glibc
import Synchronization

/// The poll thread's scratch space, allocated once: a burst of descriptors
/// and the completions answered at once. Serving allocates nothing.
struct PollScratch: ~Copyable {
    let descriptors: UnsafeMutableBufferPointer<Descriptor>
    let completions: UnsafeMutableBufferPointer<Completion>

    init(burst: Int) {
        descriptors = .allocate(capacity: burst)
        descriptors.initialize(repeating: Descriptor())
        completions = .allocate(capacity: burst)
        completions.initialize(repeating: Completion(for: Descriptor(), status: .cancelled))
    }

    deinit {
        descriptors.deallocate()
        completions.deallocate()
    }
}

/// What the poll thread works with once the daemon runs: one lane per model
/// (queue, batcher, instances) and the waker completers ring.
final class DaemonRuntime: Sendable {
    let lanes: [ModelLane]
    private let lanesByModel: [UInt32: ModelLane]
    let waker: PollWaker

    init(lanes: [ModelLane], waker: PollWaker) {
        self.lanes = lanes
        lanesByModel = Dictionary(uniqueKeysWithValues: lanes.map { ($0.modelID, $0) })
        self.waker = waker
    }

    /// The lane of model `id`: a scan for the handful of models a daemon
    /// usually serves (cheaper than hashing), the dictionary beyond.
    func lane(for id: UInt32) -> ModelLane? {
        guard lanes.count > 8 else { return lanes.first { $0.modelID == id } }
        return lanesByModel[id]
    }
}

extension DaemonCore {
    /// The poll thread: takes every session's new commands off its ring,
    /// validates them and queues them on their model's lane; hands batches
    /// to idle instances; posts the completions instances report (it is
    /// every completion ring's only writer); serves remote controllers
    /// through `gateway` (their commands onto their sessions' rings, their
    /// completions onto the network, in the same pass); when nothing moves,
    /// idles as configured; retires sessions whose end was requested. It
    /// never waits for a handler or a peer.
    func runPollLoop(_ binding: Binding, _ runtime: DaemonRuntime, _ gateway: RemoteGateway? = nil) {
        if let placement = configuration.pollThreadPlacement {
            do { try placement.apply() } catch {
                logger.error("poll thread placement failed", metadata: ["placement": "\(placement)", "error": "\(error)"])
            }
        }
        let burst = configuration.effectiveBurstSize
        let scratch = PollScratch(burst: burst)
        runtime.waker.adoptPollThread()
        var sessions: [DaemonSession] = []
        sessions.reserveCapacity(configuration.maximumSessions)
        var touched: [DaemonSession] = []
        touched.reserveCapacity(configuration.maximumSessions)
        var waitSet: [pollfd] = []
        waitSet.reserveCapacity(configuration.maximumSessions + 2)
        var lastWork = MonotonicClock.now()
        let spinBudget = configuration.idle.spinNanoseconds
        var passesSincePublish = 0
        var idleWait = PoliteSpin()

        // Relaxed: the flag is a request to stop; nothing is read on the strength of it.
        while !pollStopping.load(ordering: .relaxed) {
            // Relaxed load and store, no read-modify-write: this thread is the
            // only writer, and the watchdog only asks whether it moved.
            pollPasses.store(pollPasses.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            // Relaxed hint; the mutex orders the hand-over itself.
            if inboxPending.load(ordering: .relaxed) {
                inbox.withLock { arrived in
                    sessions.append(contentsOf: arrived)
                    arrived.removeAll(keepingCapacity: true)
                    // Relaxed: cleared under the lock the control thread sets it under.
                    inboxPending.store(false, ordering: .relaxed)
                }
            }
            var moved = 0
            var index = 0
            while index < sessions.count {
                let session = sessions[index]
                if session.isEndRequested {
                    retire(session, runtime, binding)
                    sessions.swapAt(index, sessions.count - 1)
                    sessions.removeLast()
                    continue
                }
                do {
                    moved += try serve(session, runtime, burst: burst, scratch, &touched)
                } catch {
                    session.requestEnd(.protocolViolation("\(error)"))
                    continue  // retired on the next look at this index
                }
                index += 1
            }
            var due: UInt64?
            var instancesRunning = false
            var now: UInt64 = 0  // read once, and only when some lane has commands queued
            for lane in runtime.lanes {
                moved += postReported(lane, &touched)
                if lane.isRunningOnInstanceThread { instancesRunning = true }
                guard lane.hasQueued else { continue }
                if now == 0 { now = MonotonicClock.now() }
                let (started, laneDue) = lane.dispatch(now: now) { command in
                    counters.commandsExpired.advance()
                    answer(command, .expired, lane, &touched)
                }
                if started > 0 {
                    // What a handler completed inside `start` (poll-thread
                    // execution) goes out in this pass, not the next.
                    moved += started + postReported(lane, &touched)
                }
                if let laneDue { due = min(due ?? .max, laneDue) }
            }
            ringControllers(&touched)
            if let gateway {
                // The clock read only a remote daemon pays for.
                let now = MonotonicClock.now()
                if gateway.pass(now: now, busy: moved > 0) { moved += 1 }
            }

            if moved > 0 {
                idleWait.reset()
                // Only an adaptive spin needs to know when work last moved.
                if spinBudget != .max { lastWork = now != 0 ? now : MonotonicClock.now() }
                passesSincePublish += 1
                if passesSincePublish >= 4096 {
                    counters.publish()
                    passesSincePublish = 0
                }
                continue
            }
            if spinBudget == .max || MonotonicClock.now() &- lastWork < spinBudget {
                if let due, due <= MonotonicClock.now() { continue }
                // Waiting for an instance thread, which may be queued behind
                // this one (the instance, this thread and busy-polling
                // controllers can outnumber the CPUs): spin politely.
                if instancesRunning { idleWait.pause() } else { SpinWait.pause() }
                continue
            }
            counters.publish()
            passesSincePublish = 0
            sleep(until: due, &sessions, runtime, binding, gateway, &waitSet)
            lastWork = MonotonicClock.now()
        }
        // Remote sessions first: their bridges are controllers of sessions below.
        gateway?.shutDown()
        // Stopping: retire everything, including sessions not yet picked up.
        let pending = inbox.withLock { arrived in
            defer { arrived = [] }
            return arrived
        }
        for session in sessions + pending {
            session.requestEnd(.daemonStopping)
            retire(session, runtime, binding)
        }
    }

    /// Takes up to one burst from `session`: answers at once what cannot run
    /// (invalid, unknown model, expired, model queue full), carries out
    /// cancellations, queues the rest on their models' lanes. Returns how
    /// many descriptors it took. Throws when the session's ring indices are
    /// corrupt.
    func serve(
        _ session: DaemonSession, _ runtime: DaemonRuntime, burst: Int, _ scratch: borrowing PollScratch,
        _ touched: inout [DaemonSession]
    ) throws(RingError) -> Int {
        // Take only what the completion ring can answer together with every
        // command still outstanding, so posting never waits.
        let free = session.completions.freeSlotCount(wanting: burst + session.outstanding)
        let room = free - session.outstanding
        guard room > 0 else { return 0 }
        let n = try session.submissions.dequeue(
            into: UnsafeMutableBufferPointer(rebasing: scratch.descriptors[0..<min(burst, room)]))
        guard n > 0 else { return 0 }
        let pickup = MonotonicClock.now()
        var answered = 0
        var invalid: UInt64 = 0, expired: UInt64 = 0, full: UInt64 = 0, commands: UInt64 = 0

        for k in 0..<n {
            let descriptor = scratch.descriptors[k]
            if descriptor.opcode == CommandOpcode.cancel.rawValue {
                // The session's own index says where the command waits: a
                // cancel costs O(1), whatever the queues hold.
                if let location = session.queuedCommands.location(of: descriptor.commandID),
                    location.lane < runtime.lanes.count
                {
                    let lane = runtime.lanes[location.lane]
                    lane.cancel(descriptor.commandID, of: session, at: location) { command in
                        counters.commandsCancelled.advance()
                        answer(command, .cancelled, lane, &touched)
                    }
                }
                continue
            }
            commands += 1
            var completion = Completion(for: descriptor, status: .succeeded)
            completion.pickupTimestamp = pickup
            let lane = runtime.lane(for: descriptor.modelID)
            lane?.telemetry.received.advance()
            do throws(DescriptorViolation) {
                try session.validator.validate(descriptor)
                guard let lane else { throw .unknownModel(descriptor.modelID) }
                guard let input = bytes(session.data, descriptor.inputOffset, descriptor.inputSize) else {
                    throw .inputOutOfBounds(offset: descriptor.inputOffset, size: descriptor.inputSize)
                }
                guard let output = bytes(session.data, descriptor.outputOffset, descriptor.outputCapacity) else {
                    throw .outputOutOfBounds(offset: descriptor.outputOffset, capacity: descriptor.outputCapacity)
                }
                // A typed input: its header, read once into a copy and checked
                // (a refusal writes what the model takes into the output).
                let tensor = descriptor.hasTensorHeader ? try checkTensor(input, output, lane, &completion) : nil
                let deadline = descriptor.deadline ?? .max
                let command = QueuedCommand(
                    descriptor: descriptor, session: .passUnretained(session), input: input, output: output,
                    pickup: pickup, deadline: deadline, live: true, tensor: tensor)
                if deadline <= pickup {
                    completion.statusCode = CompletionStatus.expired.rawValue
                    expired += 1
                } else if n == 1 && lane.startAlone(command, now: pickup) {
                    // A burst of one to an idle model: no queue to go through
                    // (in a longer burst the batcher may gather the rest).
                    session.outstanding += 1
                    continue
                } else if lane.enqueue(command, priority: descriptor.priority) {
                    session.outstanding += 1
                    continue
                } else {
                    completion.statusCode = CompletionStatus.modelQueueFull.rawValue
                    full += 1
                }
            } catch {
                completion.statusCode = error.completionStatus.rawValue
                completion.detail = error.completionDetail
                invalid += 1
            }
            lane?.telemetry.completed(statusCode: completion.statusCode)
            scratch.completions[answered] = completion
            answered += 1
        }
        session.counters.received.advance(by: commands)
        if answered > 0 { session.counters.failed.advance(by: UInt64(answered)) }
        // Counted before they are posted: whoever sees a completion finds it counted.
        counters.commandsReceived.advance(by: commands)
        if answered > 0 { counters.commandsFailed.advance(by: UInt64(answered)) }
        if invalid > 0 { counters.invalidDescriptors.advance(by: invalid) }
        if expired > 0 { counters.commandsExpired.advance(by: expired) }
        if full > 0 { counters.commandsRejectedQueueFull.advance(by: full) }

        if answered > 0 {
            let posted = session.completions.enqueue(
                contentsOf: UnsafeBufferPointer(rebasing: scratch.completions[0..<answered]))
            if posted != answered {
                // Room was checked before the burst; only a controller that
                // moved its completion ring's tail backwards takes it away.
                // That costs it its session, not the daemon.
                throw .indicesCorrupted(head: 0, tail: 0, capacity: session.completions.capacity)
            }
            markForDoorbell(session, &touched)
        }
        // The controller may sleep waiting for ring space.
        if (try? session.submissions.ringProducers(session.submissionDoorbell)) == true {
            counters.doorbellRings.advance()
            session.counters.doorbellRings.advance()
        }
        return n
    }

    /// Reads and checks the tensor header of a command's `input` against
    /// `lane`'s model. On a type or shape the model does not take it writes
    /// a `TensorMismatch` record into the output (when it holds 64 bytes)
    /// and sets `completion.outputSize`, then throws.
    private func checkTensor(
        _ input: UnsafeMutableRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, _ lane: ModelLane,
        _ completion: inout Completion
    ) throws(DescriptorViolation) -> TensorHeader {
        let header: TensorHeader
        do { header = try TensorHeader.read(from: UnsafeRawBufferPointer(input)) } catch { throw .tensor(error) }
        guard let requirement = lane.tensorRequirement else { return header }
        do { try requirement.check(header) } catch {
            if output.count >= TensorMismatch.size {
                TensorMismatch.write(
                    acceptedMask: requirement.acceptedMask, expectedRank: requirement.rank,
                    expected: requirement.dimensions, received: header, to: output)
                completion.outputSize = UInt32(TensorMismatch.size)
            }
            throw .tensor(error)
        }
        return header
    }

    /// The bytes a validated descriptor names (empty for size 0).
    private func bytes(_ data: DataRegion, _ offset: UInt64, _ size: UInt32) -> UnsafeMutableRawBufferPointer? {
        if size == 0 { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return data.slotBytes(offset: offset, length: UInt64(size))
    }

    /// Completes a queued command of `lane` that will not run (`cancelled`, `expired`).
    private func answer(
        _ command: QueuedCommand, _ status: CompletionStatus, _ lane: ModelLane, _ touched: inout [DaemonSession]
    ) {
        var completion = Completion(for: command.descriptor, status: status)
        completion.pickupTimestamp = command.pickup
        lane.telemetry.completed(statusCode: status.rawValue)
        counters.commandsFailed.advance()
        post(completion, to: command.session.takeUnretainedValue(), &touched)
    }

    /// Posts one completion of an outstanding command on its session's ring
    /// (dropped if the session is gone).
    private func post(_ completion: Completion, to session: DaemonSession, _ touched: inout [DaemonSession]) {
        session.outstanding -= 1
        if completion.statusCode == CompletionStatus.succeeded.rawValue {
            session.counters.succeeded.advance()
        } else {
            session.counters.failed.advance()
        }
        guard !session.isRetired, !session.isEndRequested else { return }
        guard session.completions.enqueue(completion) else {
            session.requestEnd(.protocolViolation("completion ring indices corrupt"))
            return
        }
        markForDoorbell(session, &touched)
    }

    private func markForDoorbell(_ session: DaemonSession, _ touched: inout [DaemonSession]) {
        guard !session.needsDoorbell else { return }
        session.needsDoorbell = true
        touched.append(session)
    }

    /// Rings the controllers that got completions in this pass (a system
    /// call only for one that sleeps).
    private func ringControllers(_ touched: inout [DaemonSession]) {
        guard !touched.isEmpty else { return }
        var rings: UInt64 = 0
        for session in touched {
            session.needsDoorbell = false
            guard !session.isRetired else { continue }
            if (try? session.completions.ringConsumer(session.completionDoorbell)) == true {
                rings += 1
                session.counters.doorbellRings.advance()
            }
        }
        touched.removeAll(keepingCapacity: true)
        if rings > 0 { counters.doorbellRings.advance(by: rings) }
    }

    /// Posts what `lane`'s instances have reported since the last look;
    /// recycles batches that are done. Returns how many it posted.
    private func postReported(_ lane: ModelLane, _ touched: inout [DaemonSession]) -> Int {
        var total = 0
        for slot in lane.slots {
            // Acquire (in `newReports`): every report it counts is published.
            var news = slot.newReports
            guard news > 0 else { continue }
            var succeeded: UInt64 = 0, failed: UInt64 = 0
            // One clock read per slot with news: the posting stage's end.
            let postedAt = MonotonicClock.now()
            let telemetry = lane.telemetry
            // Stops once it has found as many as the count says: a handler
            // completing a large batch one command at a time costs a scan up
            // to that command, and no command is posted before its count
            // has landed (see `BatchSlot.reported`).
            var k = 0
            while news > 0 && k < slot.count {
                defer { k += 1 }
                guard !slot.posted[k], slot.isFinished(k, generation: slot.generation) else { continue }
                news -= 1
                slot.posted[k] = true
                slot.postedCount += 1
                let report = slot.reports[k]
                var completion = Completion(for: slot.descriptors[k], status: .succeeded)
                completion.statusCode = report.statusCode
                completion.outputSize = report.outputSize
                completion.detail = report.detail
                completion.pickupTimestamp = slot.pickups[k]
                completion.handlerStartTimestamp = slot.started
                completion.handlerEndTimestamp = max(report.finished, slot.started)
                if report.statusCode == CompletionStatus.succeeded.rawValue { succeeded += 1 } else { failed += 1 }
                // Counted before it is posted (see `serve`).
                telemetry.completed(statusCode: report.statusCode)
                telemetry.finished.advance()
                if report.statusCode == CompletionStatus.succeeded.rawValue {
                    counters.commandsSucceeded.advance()
                } else {
                    counters.commandsFailed.advance()
                }
                telemetry.handler.record(completion.handlerEndTimestamp &- slot.started)
                telemetry.posting.record(postedAt &- min(completion.handlerEndTimestamp, postedAt))
                // The slot holds the session; no retain of our own.
                slot.sessions[k]?._withUnsafeGuaranteedRef { post(completion, to: $0, &touched) }
            }
            total += Int(succeeded + failed)
            if slot.postedCount == slot.count { lane.recycle(slot) }
        }
        return total
    }

    /// Sleeps until some session has work, an instance reports, a batch is
    /// due (`due`), a remote controller sends or a remote session needs a
    /// pass, or a session arrives, ends, or the daemon stops: one `ppoll(2)`
    /// over the daemon's eventfd (which completers and the control thread
    /// signal), every session's own daemon eventfd, so no controller can
    /// take a wake-up meant for another, and the UCX worker's event fd. See
    /// `SleeperAnnouncement.swift` in the core and ``PollWaker`` for why no
    /// wake-up is lost. `waitSet` is reused: no allocation once it has grown
    /// to the number of sessions.
    private func sleep(
        until due: UInt64?, _ sessions: inout [DaemonSession], _ runtime: DaemonRuntime, _ binding: Binding,
        _ gateway: RemoteGateway?, _ waitSet: inout [pollfd]
    ) {
        for session in sessions {
            session.submissions.announceEventFDSleeper()
            // Room on the completion ring matters only while commands wait:
            // announcing it otherwise would have the controller ring us for
            // every completion it reads (a wasted wake-up per round trip).
            session.waitsForCompletionRoom = session.submissions.hasElements()
            if session.waitsForCompletionRoom { session.completions.announceEventFDSleeper() }
        }
        // Relaxed: ordered by the fence below.
        runtime.waker.sleeping.store(true, ordering: .relaxed)
        // F1: orders the announcements before the re-checks below.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let now = MonotonicClock.now()
        var ready = pollStopping.load(ordering: .relaxed) || inboxPending.load(ordering: .relaxed)
        if let due, due <= now { ready = true }
        for lane in runtime.lanes where !ready {
            ready = lane.slots.contains { $0.newReports > 0 }
        }
        for session in sessions where !ready {
            // Commands that arrived after the look above, with no announcement
            // on the completion ring to wake us for room: pass again instead.
            ready =
                session.isEndRequested
                || (session.submissions.hasElements()
                    && (!session.waitsForCompletionRoom
                        || session.completions.freeSlotCount(wanting: session.outstanding + 1) > session.outstanding))
        }
        // Remote sessions: their rings are all this thread's (nothing to
        // announce); the worker is armed last, after its last progress.
        if !ready, let gateway { ready = gateway.hasWork() || !gateway.arm() }
        if !ready {
            waitSet.removeAll(keepingCapacity: true)
            waitSet.append(pollfd(fd: binding.daemonDoorbell.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            for session in sessions {
                waitSet.append(pollfd(fd: session.daemonDoorbellFD.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            }
            // The worker's event fd, last: it needs no reading (progress clears it).
            if let gateway { waitSet.append(pollfd(fd: gateway.eventFileDescriptor, events: Poll.readable, revents: 0)) }
            // Bounded, so a daemon whose doorbell broke still notices a stop.
            var timeout: UInt64 = 1_000_000_000
            if let due { timeout = min(timeout, due - now) }
            if let gateway { timeout = min(timeout, gateway.timeout(now: now)) }
            if let woke = try? Poll.wait(&waitSet, timeoutNanoseconds: Int64(timeout)), woke > 0 {
                counters.pollWakeups.advance()
                if waitSet[0].revents != 0 { _ = try? binding.daemonDoorbell.consume() }
                for (i, session) in sessions.enumerated() where waitSet[i + 1].revents != 0 {
                    _ = try? session.daemonDoorbellFD.consume()
                }
            }
            counters.sleeps.advance()
        }
        runtime.waker.sleeping.store(false, ordering: .relaxed)
        for session in sessions {
            session.submissions.withdrawEventFDSleeper()
            if session.waitsForCompletionRoom { session.completions.withdrawEventFDSleeper() }
            session.waitsForCompletionRoom = false
        }
    }

    /// Logs a handler's thrown error with its model (the commands themselves
    /// complete `handlerFailed` / `HandlerFailure.threw`). At most one line
    /// per model every 100 ms, so a handler that throws for every command
    /// cannot flood the log; the count of the ones left out goes with the
    /// next line.
    func reportHandlerError(_ error: any Error, model: UInt32) {
        let now = MonotonicClock.now()
        let (due, suppressed) = handlerErrorLog.withLock { log -> (Bool, Int) in
            var entry = log[model, default: (last: 0, suppressed: 0)]
            guard entry.last == 0 || now &- entry.last >= 100_000_000 else {
                entry.suppressed += 1
                log[model] = entry
                return (false, 0)
            }
            let suppressed = entry.suppressed
            log[model] = (now, 0)
            return (true, suppressed)
        }
        guard due else { return }
        logger.error(
            "handler threw", metadata: ["model": "\(model)", "error": "\(error)", "suppressed": "\(suppressed)"])
    }

    /// The poll thread lets go of `session`: its queued commands are dropped
    /// (its running ones finish, and their completions are discarded), and
    /// the control thread is told.
    private func retire(_ session: DaemonSession, _ runtime: DaemonRuntime, _ binding: Binding) {
        for lane in runtime.lanes { lane.purge(session) }
        session.markRetired()
        try? binding.controlDoorbell.signal()
    }
}

extension IdleStrategy {
    /// How long a thread spins after its last work before it sleeps.
    var spinNanoseconds: UInt64 {
        switch self {
        case .busyPoll: .max
        case .adaptive(let spin): spin.saturatingNanoseconds
        case .sleep: 0
        }
    }
}
