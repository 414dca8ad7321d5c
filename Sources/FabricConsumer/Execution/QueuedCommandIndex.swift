/// Where one session's queued commands sit in the model queues, by command
/// id, so that a cancel descriptor finds its command at once instead of
/// walking queues that hold every session's commands: a session sending
/// cancels of ids it never submitted costs only its own probes.
///
/// Open addressing with linear probing and backward-shift deletion (no
/// tombstones). The table holds at least twice as many entries as the
/// session can have outstanding (its completion ring's capacity), so it
/// never fills; ids are the peer's choice, so they are hashed with a seed
/// of this table's own. Every probe loop is bounded by the table size even
/// so. Poll thread only.
struct QueuedCommandIndex: ~Copyable {
    /// A queued command's place: its lane (the position in the daemon's
    /// list of lanes), priority level and slot in that level's queue.
    struct Location: Equatable {
        var lane: Int
        var level: Int
        var position: Int
    }

    private struct Entry {
        var commandID: UInt64
        var location: Location
        var used: Bool
    }

    private let entries: UnsafeMutablePointer<Entry>
    private let mask: Int
    private let seed = UInt64.random(in: .min ... .max)
    /// Entries in use.
    private(set) var count = 0

    /// An index for a session with at most `outstanding` commands in flight.
    init(outstanding: Int) {
        var size = 16
        while size < 2 * max(outstanding, 1) { size <<= 1 }
        entries = .allocate(capacity: size)
        entries.initialize(
            repeating: Entry(commandID: 0, location: Location(lane: 0, level: 0, position: 0), used: false), count: size)
        mask = size - 1
    }

    deinit { entries.deallocate() }

    private func home(of commandID: UInt64) -> Int {
        // splitmix64's finalizer over the seeded id.
        var z = (commandID ^ seed) &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return Int(truncatingIfNeeded: z ^ (z >> 31)) & mask
    }

    /// The slot holding `commandID`, or nil.
    private func slot(of commandID: UInt64) -> Int? {
        var i = home(of: commandID)
        for _ in 0...mask {
            guard entries[i].used else { return nil }
            if entries[i].commandID == commandID { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Where command `commandID` is queued, if it is.
    func location(of commandID: UInt64) -> Location? { slot(of: commandID).map { entries[$0].location } }

    /// Records (or moves) command `commandID` at `location`. A peer that
    /// reuses an id while the first is queued gets only the newer one
    /// indexed; the older one still runs, it just cannot be cancelled (and
    /// its leaving the queue does not unindex the newer one, see
    /// ``remove(_:at:)``).
    mutating func set(_ commandID: UInt64, at location: Location) {
        if let i = slot(of: commandID) {
            entries[i].location = location
            return
        }
        var i = home(of: commandID)
        for _ in 0...mask {
            if !entries[i].used {
                entries[i] = Entry(commandID: commandID, location: location, used: true)
                count += 1
                return
            }
            i = (i + 1) & mask
        }
        // Full, which the sizing rules out: leave it unindexed (not cancellable).
    }

    /// Forgets command `commandID`, which left its queue from `location`;
    /// an entry for the same id elsewhere (a reused id) stays.
    mutating func remove(_ commandID: UInt64, at location: Location) {
        guard let found = slot(of: commandID), entries[found].location == location else { return }
        var hole = found
        entries[hole].used = false
        count -= 1
        // Backward shift: move later entries of the probe run into the hole
        // when their home lies at or before it (cyclically), so every
        // remaining entry stays reachable from its home without tombstones.
        var i = (hole + 1) & mask
        for _ in 0..<mask {
            guard entries[i].used else { return }
            let home = home(of: entries[i].commandID)
            let distanceToHole = (hole - home) & mask
            let distanceToHere = (i - home) & mask
            if distanceToHole < distanceToHere {
                entries[hole] = entries[i]
                entries[i].used = false
                hole = i
            }
            i = (i + 1) & mask
        }
    }
}
