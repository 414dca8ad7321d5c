import FabricSystem
import Synchronization

/// Exclusive roles recorded in the ring's administrative cache line: the pid of
/// the process holding the role, or 0. A role held by a process that no longer
/// exists is taken over, so a restarted peer resumes where the dead one stopped.
enum EndpointRole: String {
    case producer
    case consumer

    var offset: Int {
        switch self {
        case .producer: RegionLayout.Control.producerOwner
        case .consumer: RegionLayout.Control.consumerOwner
        }
    }

    /// Claims the role for this process. Returns the pid of a dead owner it
    /// took over from, or nil.
    static func claim(_ role: EndpointRole, word: UnsafeMutablePointer<Atomic<UInt32>>) throws(RegionError) -> Int32? {
        let me = UInt32(bitPattern: currentProcessID)
        var expected: UInt32 = 0
        while true {
            // Acquiring-and-releasing: we see everything the previous owner wrote
            // before it released the role, and our later writes follow the claim.
            let (exchanged, found) = word.pointee.compareExchange(
                expected: expected, desired: me, ordering: .acquiringAndReleasing)
            if exchanged { return expected == 0 ? nil : Int32(bitPattern: expected) }
            if found == 0 {
                expected = 0
                continue
            }
            let owner = Int32(bitPattern: found)
            if found == me || processExists(owner) {
                throw .endpointInUse(role: role.rawValue, ownerPID: owner)
            }
            expected = found  // dead owner: take over
        }
    }

    /// Releases the role if this process still holds it.
    static func release(word: UnsafeMutablePointer<Atomic<UInt32>>) {
        // Release: our last index stores are visible to whoever claims next.
        _ = word.pointee.compareExchange(
            expected: UInt32(bitPattern: currentProcessID), desired: 0, ordering: .releasing)
    }
}
