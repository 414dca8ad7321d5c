import FabricSystem

/// The controller's record of commands in flight, indexed by command id
/// modulo a power of two at least as large as the number that can be in
/// flight at once (both rings full), so lookups need no hashing or allocation.
/// Ids are issued in sequence; since completions arrive in any order, ids
/// whose entries old commands still hold are skipped (``firstFreeRun(from:length:)``).
struct InFlightTable: ~Copyable {
    private struct Entry {
        var commandID: UInt64
        var input: BufferSlot
        var output: BufferSlot
        var modelID: UInt32
        var active: Bool
    }

    private let entries: UnsafeMutableBufferPointer<Entry>
    private let mask: UInt64
    /// Commands in flight.
    private(set) var count = 0

    init(minimumCapacity: Int) {
        var size = 1
        while size < minimumCapacity { size <<= 1 }
        entries = .allocate(capacity: size)
        let none = BufferSlot(index: 0, slotCount: 0, offset: 0, size: 0)
        entries.initialize(repeating: Entry(commandID: 0, input: none, output: none, modelID: 0, active: false))
        mask = UInt64(size - 1)
    }

    /// Frees the table (a noncopyable owner's deinit calls this).
    func deallocate() { entries.deallocate() }

    /// How many commands may be in flight.
    var capacity: Int { entries.count }

    /// Whether `id`'s entry is free: completions arrive in any order, so an
    /// old command still in flight may hold the entry a new id maps to.
    func canAdd(_ id: UInt64) -> Bool { !entries[Int(id & mask)].active }

    /// The first id from `start` on that begins `length` consecutive ids
    /// with free entries, skipping past entries still held by old commands;
    /// nil when there is no such run (too many commands in flight). Looks at
    /// each id once: O(capacity) at worst, O(length) usually.
    func firstFreeRun(from start: UInt64, length: Int) -> UInt64? {
        guard length >= 1, count + length <= capacity else { return nil }
        var first = start
        var free = 0
        var looked = 0
        while free < length {
            guard looked < capacity + length else { return nil }
            looked += 1
            if canAdd(first &+ UInt64(free)) {
                free += 1
            } else {
                first = first &+ UInt64(free + 1)
                free = 0
            }
        }
        return first
    }

    mutating func add(_ id: UInt64, input: BufferSlot, output: BufferSlot, modelID: UInt32) {
        precondition(canAdd(id), "in-flight entry taken")
        entries[Int(id & mask)] = Entry(commandID: id, input: input, output: output, modelID: modelID, active: true)
        count += 1
    }

    /// The model of command `id` if it is in flight.
    func model(of id: UInt64) -> UInt32? {
        let entry = entries[Int(id & mask)]
        return entry.active && entry.commandID == id ? entry.modelID : nil
    }

    /// The slots of command `id` if it is in flight (and forgets it); nil for
    /// an id that is not (a garbage completion).
    mutating func complete(_ id: UInt64) -> (BufferSlot, BufferSlot)? {
        let i = Int(id & mask)
        guard entries[i].active, entries[i].commandID == id else { return nil }
        entries[i].active = false
        count -= 1
        return (entries[i].input, entries[i].output)
    }
}
