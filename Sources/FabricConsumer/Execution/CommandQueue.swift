import FabricSession
import FabricSystem

/// A command taken off a session's ring, validated, waiting for an instance.
struct QueuedCommand {
    var descriptor: Descriptor
    /// Not retained: a session's queued commands are purged before it is retired.
    var session: Unmanaged<DaemonSession>
    var input: UnsafeMutableRawBufferPointer
    var output: UnsafeMutableRawBufferPointer
    var pickup: UInt64
    /// `MonotonicClock` deadline (`.max`: none).
    var deadline: UInt64
    /// False once cancelled or purged: skipped when it reaches the head.
    var live: Bool
    /// The input's checked tensor header (nil: untyped input).
    var tensor: TensorHeader? = nil
}

/// A bounded FIFO of ``QueuedCommand``s in preallocated storage: one per
/// priority level of a model. Poll thread only; no allocation after init.
struct CommandQueue: ~Copyable {
    private let storage: UnsafeMutablePointer<QueuedCommand>
    let capacity: Int
    private var head = 0
    /// Entries held, live or not.
    private(set) var occupied = 0

    init(capacity: Int) {
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit {
        for k in 0..<occupied { (storage + (head + k) % capacity).deinitialize(count: 1) }
        storage.deallocate()
    }

    var isFull: Bool { occupied == capacity }

    /// Appends `command`; returns the slot it occupies until it leaves
    /// (or ``compact(moved:)`` moves it).
    mutating func append(_ command: QueuedCommand) -> Int {
        precondition(occupied < capacity)
        let position = (head + occupied) % capacity
        (storage + position).initialize(to: command)
        occupied += 1
        return position
    }

    /// When the oldest entry, live or not, was picked up.
    var firstPickup: UInt64? { occupied > 0 ? storage[head].pickup : nil }

    mutating func removeFirst() -> QueuedCommand {
        precondition(occupied > 0)
        let command = (storage + head).move()
        head = (head + 1) % capacity
        occupied -= 1
        return command
    }

    /// Drops dead entries at the head.
    mutating func dropDeadHead() {
        while occupied > 0 && !storage[head].live { _ = removeFirst() }
    }

    /// The slot of the oldest entry (meaningful when `occupied > 0`).
    var headPosition: Int { head }

    /// Calls `body` on every live entry, oldest first; an entry `body`
    /// returns true for is marked dead and passed to `done` with its slot
    /// (for its completion).
    mutating func kill(where body: (QueuedCommand) -> Bool, then done: (QueuedCommand, Int) -> Void) {
        for k in 0..<occupied {
            let i = (head + k) % capacity
            if storage[i].live && body(storage[i]) {
                storage[i].live = false
                done(storage[i], i)
            }
        }
        dropDeadHead()
    }

    /// Marks the entry in slot `position` dead and returns it, if the slot
    /// holds a live entry `body` accepts.
    mutating func kill(at position: Int, where body: (QueuedCommand) -> Bool) -> QueuedCommand? {
        guard position >= 0, position < capacity, (position - head + capacity) % capacity < occupied,
            storage[position].live, body(storage[position])
        else { return nil }
        storage[position].live = false
        let command = storage[position]
        dropDeadHead()
        return command
    }

    /// Closes the gaps dead entries left, keeping the live ones in order
    /// (`moved` hears each one's new slot); returns how many it dropped.
    /// O(occupied): called only when the queue is full, so cancelled
    /// commands never take a live command's place.
    mutating func compact(moved: (QueuedCommand, Int) -> Void) -> Int {
        var kept = 0
        for k in 0..<occupied {
            let from = (head + k) % capacity
            let command = (storage + from).move()
            guard command.live else { continue }
            let to = (head + kept) % capacity
            (storage + to).initialize(to: command)
            if to != from { moved(command, to) }
            kept += 1
        }
        let dropped = occupied - kept
        occupied = kept
        return dropped
    }
}
