import FabricSession
import FabricSystem
import Glibc
import Synchronization

/// The poll thread's scratch space, allocated once: a burst of descriptors,
/// their completions, buffers and handler results. Serving allocates nothing.
struct PollScratch: ~Copyable {
    let descriptors: UnsafeMutableBufferPointer<Descriptor>
    let completions: UnsafeMutableBufferPointer<Completion>
    let inputs: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>
    let outputs: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>
    let results: UnsafeMutableBufferPointer<CommandOutcome>
    let valid: UnsafeMutableBufferPointer<Bool>

    init(burst: Int) {
        descriptors = .allocate(capacity: burst)
        descriptors.initialize(repeating: Descriptor())
        completions = .allocate(capacity: burst)
        completions.initialize(repeating: Completion(for: Descriptor(), status: .cancelled))
        inputs = .allocate(capacity: burst)
        inputs.initialize(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        outputs = .allocate(capacity: burst)
        outputs.initialize(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        results = .allocate(capacity: burst)
        results.initialize(repeating: .unreported)
        valid = .allocate(capacity: burst)
        valid.initialize(repeating: false)
    }

    deinit {
        descriptors.deallocate()
        completions.deallocate()
        inputs.deallocate()
        outputs.deallocate()
        results.deallocate()
        valid.deallocate()
    }
}

extension DaemonCore {
    /// The poll thread: serve every session in turn; when none has work, idle
    /// as configured; retire sessions whose end was requested.
    func runPollLoop(_ binding: Binding) {
        if let placement = configuration.pollThreadPlacement {
            do { try placement.apply() } catch {
                logger.error("poll thread placement failed", metadata: ["placement": "\(placement)", "error": "\(error)"])
            }
        }
        let burst = min(max(configuration.burstSize, 1), 256)
        let scratch = PollScratch(burst: burst)
        var sessions: [DaemonSession] = []
        sessions.reserveCapacity(configuration.maximumSessions)
        var waitSet: [pollfd] = []
        waitSet.reserveCapacity(configuration.maximumSessions + 1)
        var lastWork = MonotonicClock.now()
        let spinBudget: UInt64 =
            switch configuration.idle {
            case .busyPoll: .max
            case .adaptive(let spin): spin.saturatingNanoseconds
            case .sleep: 0
            }
        var passesSincePublish = 0

        // Relaxed: the flag is a request to stop; nothing is read on the strength of it.
        while !pollStopping.load(ordering: .relaxed) {
            // Relaxed hint; the mutex orders the hand-over itself.
            if inboxPending.load(ordering: .relaxed) {
                inbox.withLock { arrived in
                    sessions.append(contentsOf: arrived)
                    arrived.removeAll(keepingCapacity: true)
                    // Relaxed: cleared under the lock the control thread sets it under.
                    inboxPending.store(false, ordering: .relaxed)
                }
            }
            var served = 0
            var index = 0
            while index < sessions.count {
                let session = sessions[index]
                if session.isEndRequested {
                    retire(session, binding)
                    sessions.swapAt(index, sessions.count - 1)
                    sessions.removeLast()
                    continue
                }
                do {
                    served += try serve(session, burst: burst, scratch)
                } catch {
                    session.requestEnd(.protocolViolation("\(error)"))
                    continue  // retired on the next look at this index
                }
                index += 1
            }
            if served > 0 {
                lastWork = MonotonicClock.now()
                passesSincePublish += 1
                if passesSincePublish >= 4096 {
                    counters.publish()
                    passesSincePublish = 0
                }
                continue
            }
            if spinBudget == .max || MonotonicClock.now() &- lastWork < spinBudget {
                SpinWait.pause()
                continue
            }
            counters.publish()
            passesSincePublish = 0
            sleep(until: &sessions, binding, &waitSet)
            lastWork = MonotonicClock.now()
        }
        // Stopping: retire everything, including sessions not yet picked up.
        let pending = inbox.withLock { arrived in
            defer { arrived = [] }
            return arrived
        }
        for session in sessions + pending {
            session.requestEnd(.daemonStopping)
            retire(session, binding)
        }
    }

    /// Takes up to one burst from `session`, runs it, posts its completions.
    /// Returns how many commands it took. Throws when the session's ring
    /// indices are corrupt.
    func serve(_ session: DaemonSession, burst: Int, _ scratch: borrowing PollScratch) throws(RingError) -> Int {
        // Take only what the completion ring can answer, so posting never waits.
        let room = session.completions.freeSlotCount(wanting: burst)
        guard room > 0 else { return 0 }
        let n = try session.submissions.dequeue(
            into: UnsafeMutableBufferPointer(rebasing: scratch.descriptors[0..<min(burst, room)]))
        guard n > 0 else { return 0 }
        let pickup = MonotonicClock.now()
        var invalid: UInt64 = 0

        for k in 0..<n {
            let descriptor = scratch.descriptors[k]
            var completion = Completion(for: descriptor, status: .succeeded)
            completion.pickupTimestamp = pickup
            do throws(DescriptorViolation) {
                try session.validator.validate(descriptor)
                guard let input = bytes(session.data, descriptor.inputOffset, descriptor.inputSize),
                    let output = bytes(session.data, descriptor.outputOffset, descriptor.outputCapacity)
                else {
                    throw .inputOutOfBounds(offset: descriptor.inputOffset, size: descriptor.inputSize)
                }
                scratch.inputs[k] = input
                scratch.outputs[k] = output
                scratch.valid[k] = true
            } catch {
                completion.statusCode = error.completionStatus.rawValue
                completion.detail = error.completionDetail
                scratch.valid[k] = false
                invalid += 1
            }
            scratch.completions[k] = completion
        }

        // Runs of consecutive valid commands for one model go to its handler
        // as one batch; completions keep submission order.
        var k = 0
        while k < n {
            guard scratch.valid[k] else {
                k += 1
                continue
            }
            let model = scratch.descriptors[k].modelID
            var end = k + 1
            while end < n && scratch.valid[end] && scratch.descriptors[end].modelID == model { end += 1 }
            run(model: model, range: k..<end, session: session, scratch)
            k = end
        }

        var succeeded: UInt64 = 0
        for k in 0..<n where scratch.completions[k].statusCode == CompletionStatus.succeeded.rawValue { succeeded += 1 }
        let posted = session.completions.enqueue(contentsOf: UnsafeBufferPointer(rebasing: scratch.completions[0..<n]))
        if posted != n {
            // Room was checked before the burst; only a controller that moved
            // its completion ring's tail backwards takes it away. That costs it
            // its session, not the daemon (an assert here was a trap a peer
            // could pull in debug builds).
            throw .indicesCorrupted(head: 0, tail: 0, capacity: session.completions.capacity)
        }
        var rings: UInt64 = 0
        if (try? session.completions.ringConsumer(session.completionDoorbell)) == true { rings += 1 }
        if (try? session.submissions.ringProducers(session.submissionDoorbell)) == true { rings += 1 }

        DaemonCounters.bump(counters.commandsReceived, by: UInt64(n))
        DaemonCounters.bump(counters.commandsSucceeded, by: succeeded)
        DaemonCounters.bump(counters.commandsFailed, by: UInt64(n) - succeeded)
        if invalid > 0 { DaemonCounters.bump(counters.invalidDescriptors, by: invalid) }
        if rings > 0 { DaemonCounters.bump(counters.doorbellRings, by: rings) }
        return n
    }

    /// The bytes a validated descriptor names (empty for size 0).
    private func bytes(_ data: DataRegion, _ offset: UInt64, _ size: UInt32) -> UnsafeMutableRawBufferPointer? {
        if size == 0 { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return data.slotBytes(offset: offset, length: UInt64(size))
    }

    /// Calls the model's handler on `range` of the burst and fills in the
    /// completions from what it reported.
    private func run(model: UInt32, range: Range<Int>, session: DaemonSession, _ scratch: borrowing PollScratch) {
        for k in range { scratch.results[k] = .unreported }
        let start = MonotonicClock.now()
        var threw = false
        if let handler = handlers[model] {
            let batch = CommandBatch(
                descriptors: scratch.descriptors.baseAddress! + range.lowerBound,
                inputs: scratch.inputs.baseAddress! + range.lowerBound,
                outputs: scratch.outputs.baseAddress! + range.lowerBound,
                results: scratch.results.baseAddress! + range.lowerBound,
                count: range.count)
            do { try handler.handle(batch) } catch {
                threw = true
                reportHandlerError(error, model: model, session: session)
            }
        }
        let end = MonotonicClock.now()
        for k in range {
            scratch.completions[k].handlerStartTimestamp = start
            scratch.completions[k].handlerEndTimestamp = end
            switch scratch.results[k] {
            case .succeeded(let size):
                scratch.completions[k].outputSize = size
            case .failed(let code):
                scratch.completions[k].statusCode = CompletionStatus.handlerFailed.rawValue
                scratch.completions[k].detail = code
            case .unreported:
                scratch.completions[k].statusCode = CompletionStatus.handlerFailed.rawValue
                scratch.completions[k].detail = threw ? HandlerFailure.threw.rawValue : HandlerFailure.unreported.rawValue
            }
        }
    }

    /// Sleeps until some session has work (or a session arrives, ends, or
    /// the daemon stops): one `ppoll(2)` over the control thread's eventfd and
    /// every session's own daemon eventfd, so no controller can take a
    /// wake-up meant for another. See `SleeperAnnouncement.swift` in the core
    /// for why no wake-up is lost. `waitSet` is reused: no allocation once it
    /// has grown to the number of sessions.
    private func sleep(until sessions: inout [DaemonSession], _ binding: Binding, _ waitSet: inout [pollfd]) {
        for session in sessions {
            session.submissions.announceEventFDSleeper()
            session.completions.announceEventFDSleeper()
        }
        // F1: orders the announcements before the re-checks below.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        var ready = pollStopping.load(ordering: .relaxed) || inboxPending.load(ordering: .relaxed)
        for session in sessions where !ready {
            ready =
                session.isEndRequested
                || (session.submissions.hasElements() && session.completions.freeSlotCount(wanting: 1) > 0)
        }
        if !ready {
            waitSet.removeAll(keepingCapacity: true)
            waitSet.append(pollfd(fd: binding.daemonDoorbell.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            for session in sessions {
                waitSet.append(pollfd(fd: session.daemonDoorbellFD.fileDescriptor.rawValue, events: Poll.readable, revents: 0))
            }
            // Bounded, so a daemon whose doorbell broke still notices a stop.
            if let woke = try? Poll.wait(&waitSet, timeoutNanoseconds: 1_000_000_000), woke > 0 {
                if waitSet[0].revents != 0 { _ = try? binding.daemonDoorbell.consume() }
                for (i, session) in sessions.enumerated() where waitSet[i + 1].revents != 0 {
                    _ = try? session.daemonDoorbellFD.consume()
                }
            }
            DaemonCounters.bump(counters.sleeps)
        }
        for session in sessions {
            session.submissions.withdrawEventFDSleeper()
            session.completions.withdrawEventFDSleeper()
        }
    }

    /// Logs a handler's thrown error with its model and session (the
    /// commands themselves complete `handlerFailed` / `HandlerFailure.threw`).
    /// At most one line per model every 100 ms, so a handler that throws for
    /// every command cannot flood the log; the count of the ones left out
    /// goes with the next line.
    private func reportHandlerError(_ error: any Error, model: UInt32, session: DaemonSession) {
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
            "handler threw",
            metadata: [
                "model": "\(model)", "session": "\(session.id)", "error": "\(error)",
                "suppressed": "\(suppressed)",
            ])
    }

    /// The poll thread lets go of `session` and tells the control thread.
    private func retire(_ session: DaemonSession, _ binding: Binding) {
        session.markRetired()
        try? binding.controlDoorbell.signal()
    }
}
