import FabricSystem
import Synchronization

/// One direction of a ring's doorbell ("data available" or "space
/// available"): the count of waiters and the futex word, both in the
/// region's doorbell cache line.
///
/// ## Why no wake-up is lost
///
/// Waiter (wants the condition, e.g. "head != tail"):
///
///     ticket = futexWord                        (acquire)
///     waiters += 1
///     fence(seq_cst)                            ── F1
///     if condition { waiters -= 1; done }
///     futex_wait(futexWord, expected: ticket)   returns at once if the word moved
///     waiters -= 1
///
/// Notifier (has just made the condition true with a release store):
///
///     fence(seq_cst)                            ── F2
///     if waiters != 0 { futexWord += 1; futex_wake(all) }
///
/// F1 and F2 are sequentially consistent fences, so the two loads after them
/// cannot both miss the other side's store before them (the store-buffering
/// pattern): either the waiter sees the condition and does not sleep, or the
/// notifier sees `waiters != 0` and rings. When it rings, it changes the futex
/// word before waking, so a waiter that has not yet entered `futex_wait` finds
/// the word different from its ticket and returns at once: no window is left
/// between the waiter's last check and its sleep. With an eventfd the counter
/// plays the futex word's part: a signal sent before the waiter polls leaves
/// the counter non-zero and the poll returns at once.
///
/// The waiter word counts futex sleepers in its low 16 bits and eventfd
/// sleepers in its high 16 bits, so a notifier makes exactly the wake-up
/// calls someone is waiting for (one syscall per ring, not two).
@usableFromInline
struct DoorbellLine {
    /// Added to the waiter word by a futex sleeper.
    @usableFromInline static let futexSleeper: UInt32 = 1
    /// Added to the waiter word by an eventfd sleeper.
    @usableFromInline static let eventFDSleeper: UInt32 = 1 << 16

    @usableFromInline let waiters: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let futexWord: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let isData: Bool

    @usableFromInline
    init(control: UnsafeMutableRawPointer, data: Bool) {
        isData = data
        waiters = (control + (data ? RegionLayout.Control.dataWaiters : RegionLayout.Control.spaceWaiters))
            .assumingMemoryBound(to: Atomic<UInt32>.self)
        futexWord = (control + (data ? RegionLayout.Control.dataAvailableFutex : RegionLayout.Control.spaceAvailableFutex))
            .assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    @inlinable
    func eventFD(_ doorbell: Doorbell) -> EventFD? {
        if case .eventFD(let data, let space) = doorbell.sleeper { return isData ? data : space }
        return nil
    }

    /// Wakes the sleepers on this line, if any. Call after the release store
    /// that made their condition true. Returns whether a wake-up syscall was made.
    @inlinable
    @discardableResult
    func ring(_ doorbell: Doorbell) throws(DoorbellError) -> Bool {
        // F2: orders the caller's index store before the waiter-count load below.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        // Relaxed: the fence above provides the ordering.
        let sleeping = waiters.pointee.load(ordering: .relaxed)
        guard sleeping != 0 else { return false }
        // The futex word moves on every ring that finds a sleeper, so that a
        // futex waiter between its check and its sleep never sleeps on a stale
        // ticket. Release: a waiter that sees the new word also sees the condition.
        futexWord.pointee.wrappingAdd(1, ordering: .releasing)
        if sleeping & 0xFFFF != 0 {
            // A failed wake (only EFAULT or EINVAL, impossible on a mapped,
            // aligned word) leaves sleepers to their timeout: nothing to report.
            _ = try? Futex.wake(UnsafeMutableRawPointer(futexWord).assumingMemoryBound(to: UInt32.self), count: Int32.max)
        }
        if sleeping >> 16 != 0, let eventFD = eventFD(doorbell) { try eventFD.signal() }
        return true
    }

    /// Waits until `ready()` is true or `deadline` (`MonotonicClock`
    /// nanoseconds) passes: spins for the doorbell's spin budget, then sleeps.
    @inlinable
    func wait(
        _ doorbell: Doorbell, deadline: UInt64, until ready: () throws(RingError) -> Bool
    ) throws(RingWaitError) -> DoorbellWait {
        var result = DoorbellWait()
        func check() throws(RingWaitError) -> Bool {
            do { return try ready() } catch { throw .ring(error) }
        }
        if try check() {
            result.isReady = true
            return result
        }

        // Spin phase.
        let start = MonotonicClock.now()
        let spinEnd = doorbell.spinNanoseconds == .max ? deadline : min(deadline, start &+ doorbell.spinNanoseconds)
        var spins = 0
        while doorbell.spinNanoseconds > 0 {
            if try check() {
                result.isReady = true
                return result
            }
            spins &+= 1
            SpinWait.pause()
            if doorbell.yieldEverySpins > 0 && spins % doorbell.yieldEverySpins == 0 { CurrentThread.yield() }
            if spins & 63 == 0 && MonotonicClock.now() >= spinEnd { break }
        }
        guard doorbell.sleeper != nil else { return result }  // busy poll: deadline passed

        // Sleep phase.
        let eventFD = eventFD(doorbell)
        let announcement = eventFD == nil ? Self.futexSleeper : Self.eventFDSleeper
        while true {
            let now = MonotonicClock.now()
            if now >= deadline { return result }
            // Acquire: pairs with the notifier's release increment.
            let ticket = futexWord.pointee.load(ordering: .acquiring)
            // Relaxed: ordered before the condition check by F1.
            waiters.pointee.wrappingAdd(announcement, ordering: .relaxed)
            // F1: orders the waiter-count store before the condition load.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            let readyNow: Bool
            do { readyNow = try check() } catch {
                waiters.pointee.wrappingSubtract(announcement, ordering: .relaxed)
                throw error
            }
            if readyNow {
                // Relaxed: only a hint for notifiers.
                waiters.pointee.wrappingSubtract(announcement, ordering: .relaxed)
                result.isReady = true
                return result
            }
            let remaining = Int64(deadline &- now)
            var woke = true
            if let eventFD {
                do {
                    woke = try eventFD.wait(timeoutNanoseconds: remaining)
                    if woke { try eventFD.consume() }
                } catch {
                    waiters.pointee.wrappingSubtract(announcement, ordering: .relaxed)
                    throw .doorbell(error)
                }
            } else {
                do {
                    let word = UnsafeMutableRawPointer(futexWord).assumingMemoryBound(to: UInt32.self)
                    let outcome = try Futex.wait(on: word, expecting: ticket, timeoutNanoseconds: remaining)
                    woke = outcome != .timedOut
                } catch {
                    waiters.pointee.wrappingSubtract(announcement, ordering: .relaxed)
                    throw .doorbell(.system(error))
                }
            }
            // Relaxed: only a hint for notifiers.
            waiters.pointee.wrappingSubtract(announcement, ordering: .relaxed)
            result.sleeps += 1
            if try check() {
                result.isReady = true
                return result
            }
            if woke { result.spuriousWakeups += 1 }
        }
    }
}

/// Why a blocking send or receive did not complete.
public enum RingWaitError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The timeout passed first (ring still full / still empty).
    case timedOut
    /// The ring reported a fault while waiting.
    case ring(RingError)
    /// The doorbell failed (e.g. a closed eventfd).
    case doorbell(DoorbellError)

    public var description: String {
        switch self {
        case .timedOut: "timed out"
        case .ring(let e): "\(e)"
        case .doorbell(let e): "\(e)"
        }
    }
}
