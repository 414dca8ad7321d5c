import FabricSystem

/// How a ring end waits for its peer and how it wakes it: busy polling, a
/// futex word in the shared region, an eventfd pair, or spinning for a while
/// before blocking (adaptive).
///
/// One value describes a ring; both ends should use the same one. Ringing
/// is free when nobody sleeps: waiters announce themselves in the region's
/// doorbell line (`dataWaiters` / `spaceWaiters`), and a notifier makes a
/// wake-up system call only when that count is non-zero, the idea behind
/// io_uring's `IORING_SQ_NEED_WAKEUP` and virtio's event suppression. The
/// argument that no wake-up can be lost is in `Docs/Doorbells.md` and on
/// `DoorbellLine`.
///
/// ```swift
/// try producer.send(descriptor, doorbell: .adaptive(spinFor: .microseconds(50), then: .futex), timeout: .seconds(1))
/// let next = try consumer.receive(doorbell: .futex, timeout: .milliseconds(100))
/// ```
public struct Doorbell: Sendable {
    /// The kinds of doorbell.
    public enum Kind: String, Sendable, CaseIterable {
        /// Spin with the CPU pause hint (lowest latency, burns a core).
        case busyPoll
        /// Sleep on a futex word in the region; nothing to pass around.
        case futex
        /// Sleep in `poll(2)` on an eventfd (one per direction), which must be
        /// inherited or passed to the peer.
        case eventFD
        /// Spin for a while, then sleep on a futex or eventfd.
        case adaptive
    }

    /// How a blocking doorbell sleeps.
    @usableFromInline
    enum Sleeper: Sendable {
        case futex
        case eventFD(dataAvailable: EventFD, spaceAvailable: EventFD)
    }

    /// The doorbell's kind.
    public let kind: Kind
    /// Nanoseconds to spin before sleeping (`UInt64.max`: never sleep).
    @usableFromInline let spinNanoseconds: UInt64
    /// Call `sched_yield` every this many spins (0: never).
    @usableFromInline let yieldEverySpins: Int
    @usableFromInline let sleeper: Sleeper?

    private init(kind: Kind, spinNanoseconds: UInt64, yieldEverySpins: Int = 0, sleeper: Sleeper?) {
        self.kind = kind
        self.spinNanoseconds = spinNanoseconds
        self.yieldEverySpins = yieldEverySpins
        self.sleeper = sleeper
    }

    /// Spin until ready or the deadline; never sleeps, never makes a syscall.
    public static let busyPoll = Doorbell(kind: .busyPoll, spinNanoseconds: .max, sleeper: nil)

    /// Spin, calling `sched_yield(2)` every `spins` iterations so that other
    /// threads on the same core can run.
    public static func busyPoll(yieldingEvery spins: Int) -> Doorbell {
        Doorbell(kind: .busyPoll, spinNanoseconds: .max, yieldEverySpins: max(1, spins), sleeper: nil)
    }

    /// Sleep on the ring's futex words (`FUTEX_WAIT`/`FUTEX_WAKE`, shared, not private).
    public static let futex = Doorbell(kind: .futex, spinNanoseconds: 0, sleeper: .futex)

    /// Sleep on eventfds: `dataAvailable` is signalled when data is posted,
    /// `spaceAvailable` when space is freed. Both processes need both
    /// descriptors (inherit them, or pass them with `EventFD.send(over:tag:)`).
    public static func eventFD(dataAvailable: EventFD, spaceAvailable: EventFD) -> Doorbell {
        Doorbell(
            kind: .eventFD, spinNanoseconds: 0, sleeper: .eventFD(dataAvailable: dataAvailable, spaceAvailable: spaceAvailable))
    }

    /// Spin for `spin`, then sleep like `blocking` (``futex`` or an
    /// ``eventFD(dataAvailable:spaceAvailable:)`` doorbell; a busy-poll
    /// doorbell here means "never sleep").
    public static func adaptive(spinFor spin: Duration, then blocking: Doorbell) -> Doorbell {
        return Doorbell(
            kind: .adaptive, spinNanoseconds: blocking.sleeper == nil ? .max : spin.saturatingNanoseconds,
            sleeper: blocking.sleeper)
    }
}

/// What a wait ended with.
public struct DoorbellWait: Equatable, Sendable {
    /// Whether the condition became true (false: the deadline passed).
    public var isReady: Bool
    /// Times the waiter went to sleep in the kernel.
    public var sleeps: Int
    /// Times it woke up and found the condition still false (a wake-up meant
    /// for another waiter, a signal, or a stale eventfd count).
    public var spuriousWakeups: Int

    /// A wait that has just begun.
    public init(isReady: Bool = false, sleeps: Int = 0, spuriousWakeups: Int = 0) {
        self.isReady = isReady
        self.sleeps = sleeps
        self.spuriousWakeups = spuriousWakeups
    }
}
