import FabricSystem

#if _endian(big)
#error("The FabricQueue ABI is little-endian; big-endian hosts are not supported.")
#endif

/// Byte offsets and constants of the FabricQueue shared-memory ABI, version 2.
///
/// Every field is little-endian and fixed-width, and every reference between
/// parts of a region is a byte offset from the start of the region, never a
/// pointer, so two processes may map the region at different addresses.
/// `Docs/RingLayout.md` documents the same layout byte by byte for C peers.
public enum RegionLayout {
    /// "FABRICQR" read as a little-endian `UInt64`.
    public static let magic: UInt64 = 0x5251_4349_5242_4146
    /// The ABI version this build speaks.
    public static let abiVersion: UInt32 = 2
    /// The cache-line size the layout is padded to.
    public static let cacheLine = 64
    /// Producer and consumer state are this far apart: two cache lines, so the
    /// adjacent-line prefetcher does not couple them either.
    public static let indexStride = 128

    /// Size of the region header at offset 0.
    public static let headerSize = 128
    /// Offset of the ring control block.
    public static let controlOffset = 128
    /// Size of the ring control block.
    public static let controlSize = 512

    /// Region header field offsets.
    public enum Header {
        /// Offset of `magic`: UInt64, written last (release).
        public static let magic = 0
        /// Offset of `abiVersion`: UInt32.
        public static let abiVersion = 8
        /// Offset of `headerSize`: UInt32.
        public static let headerSize = 12
        /// Offset of `regionSize`: UInt64.
        public static let regionSize = 16
        /// Offset of `ringKind`: UInt32.
        public static let ringKind = 24
        /// Offset of `elementTag`: UInt32.
        public static let elementTag = 28
        /// Offset of `slotSize`: UInt32.
        public static let slotSize = 32
        /// Offset of `capacity`: UInt32.
        public static let capacity = 36
        /// Offset of `controlOffset`: UInt64.
        public static let controlOffset = 40
        /// Offset of `slotsOffset`: UInt64.
        public static let slotsOffset = 48
        /// Offset of `sequencesOffset`: UInt64, 0 for SPSC.
        public static let sequencesOffset = 56
        /// Offset of `creatorPID`: UInt32.
        public static let creatorPID = 64
        /// Offset of `flags`: UInt32.
        public static let flags = 68
        /// Offset of `epoch`: UInt64.
        public static let epoch = 72
        /// Offset of `createdAt`: UInt64, CLOCK_REALTIME ns.
        public static let createdAt = 80
        /// Offset of `checksum`: UInt64, FNV-1a over bytes 8..<88.
        public static let checksum = 88
        // 96..<128 reserved, zero.
    }

    /// Ring control block offsets, relative to `controlOffset`.
    /// Set in an MPSC slot's sequence word, with `position + 1` in the other
    /// bits, when the producer that reserved the slot gave it up: the
    /// consumer steps over such a slot instead of waiting for it. (Positions
    /// never reach 2^63: that is 292 years at a billion descriptors a second.)
    public static let abandonedSequenceBit: UInt64 = 1 << 63

    /// The bytes of a region's file whose open-file-description locks
    /// (`fcntl(F_OFD_SETLK)`, a write lock on one byte) say who holds each
    /// exclusive role: an endpoint holds its byte's lock for as long as it
    /// exists, and the kernel drops it when the holder exits. A peer written
    /// in another language claims a role the same way (see `fq_claim_role`
    /// in `fabricqueue.h`). The bytes lie far past the end of any region;
    /// locks there need no file space.
    public enum RoleLock {
        /// The SPSC producer role.
        public static let producerByte: Int64 = 1 << 62
        /// The consumer role (SPSC and MPSC).
        public static let consumerByte: Int64 = (1 << 62) + 1
    }

    public enum Control {
        /// UInt64: next position the producer(s) will write. SPSC: published by
        /// the producer (release). MPSC: the reservation counter (CAS).
        public static let head = 0
        /// UInt64: next position the consumer will read (release).
        public static let tail = 128
        /// Doorbell line. UInt32: how many processes are asleep (or about to
        /// sleep) waiting for data; a notifier makes a wake-up syscall only
        /// when it is non-zero.
        public static let dataWaiters = 256
        /// UInt32: how many are asleep waiting for space.
        public static let spaceWaiters = 260
        /// Offset of `dataAvailableFutex`.
        public static let dataAvailableFutex = 264
        /// Offset of `spaceAvailableFutex`.
        public static let spaceAvailableFutex = 268
        /// Administrative line, written only when an endpoint attaches or detaches.
        public static let producerOwner = 384  // UInt32 pid, SPSC only
        /// Offset of `consumerOwner`: UInt32 pid.
        public static let consumerOwner = 388
    }

    /// `flags` bits in the region header (informational).
    public enum Flags {
        /// The region is backed by huge pages.
        public static let hugePages: UInt32 = 1 << 0
        /// The region is an anonymous memfd.
        public static let anonymous: UInt32 = 1 << 1
    }
}
