import FabricSystem
import Synchronization
import SystemPackage

/// Exclusive roles of a ring: the SPSC producer and every ring's consumer.
enum EndpointRole: String {
    case producer
    case consumer

    /// The owner word in the control block's administrative line.
    var offset: Int {
        switch self {
        case .producer: RegionLayout.Control.producerOwner
        case .consumer: RegionLayout.Control.consumerOwner
        }
    }

    /// The byte of the region's file whose lock stands for this role.
    var lockByte: Int64 {
        switch self {
        case .producer: RegionLayout.RoleLock.producerByte
        case .consumer: RegionLayout.RoleLock.consumerByte
        }
    }
}

/// A role this process holds, from claim to release (its deinit).
///
/// Who holds a role is decided by an open-file-description lock on one
/// byte of the region's file (``RegionLayout/RoleLock``): the kernel drops
/// it when the holder closes it or exits, however it exits, so a dead
/// holder's role is free at once, a live holder's never is, whatever pids
/// say (a dead holder's pid may have been reused; a holder in another pid
/// namespace has a pid that means nothing here). The owner word keeps the
/// holder's pid as information (`fabricq inspect`, ``SPSCProducer/tookOverFrom``).
struct RoleClaim: ~Copyable {
    /// Keeps the mapping that `word` points into alive until this claim is
    /// released: an endpoint's stored properties are destroyed in an order
    /// this claim cannot rely on.
    let region: SharedRegion
    let word: UnsafeMutablePointer<Atomic<UInt32>>
    let lock: FileDescriptor
    /// The pid the owner word named when this claim took the role over (a
    /// previous holder that died without releasing), or nil.
    let tookOverFrom: Int32?

    /// Claims `role` of the ring in `region`, whose owner word is `word`.
    init(_ role: EndpointRole, region: SharedRegion, word: UnsafeMutablePointer<Atomic<UInt32>>) throws(RegionError) {
        let held: FileDescriptor?
        do { held = try FileLock.tryExclusiveByte(of: region.fileDescriptor, at: role.lockByte) } catch {
            throw .system(error)
        }
        guard let held else {
            // Acquire: read the holder's pid as it published it.
            throw .endpointInUse(role: role.rawValue, ownerPID: Int32(bitPattern: word.pointee.load(ordering: .acquiring)))
        }
        let me = UInt32(bitPattern: currentProcessID)
        // Acquiring-and-releasing: we see everything the previous holder wrote
        // before it let go of the role, and our later writes follow the claim.
        let previous = word.pointee.exchange(me, ordering: .acquiringAndReleasing)
        self.region = region
        self.word = word
        lock = held
        tookOverFrom = previous == 0 || previous == me ? nil : Int32(bitPattern: previous)
    }

    deinit {
        // Release: our last index stores are visible to whoever claims next.
        _ = word.pointee.compareExchange(expected: UInt32(bitPattern: currentProcessID), desired: 0, ordering: .releasing)
        try? lock.close()
    }
}
