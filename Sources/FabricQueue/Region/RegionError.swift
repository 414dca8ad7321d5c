import FabricSystem

/// Why a region could not be created, attached or validated.
///
/// Attaching validates everything the other process wrote before touching
/// anything else, and each kind of damage has its own case, so an operator
/// reads what is wrong rather than a crash.
public enum RegionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed; the error names it (`"open"`, `"mmap"`, …) and keeps its errno.
    case system(SystemCallError)
    /// The path already exists and the region was created exclusively.
    case alreadyExists(path: String)
    /// The path or descriptor is not a regular file (a directory, FIFO, device…).
    case notARegularFile(fileType: String)
    /// The file is smaller than the header or than the layout it claims.
    case truncated(fileSize: Int, required: Int)
    /// The magic word is zero: the creator has not finished (or died) initializing.
    case notInitialized
    /// The magic word is not FabricQueue's.
    case badMagic(found: UInt64)
    /// The ABI version is not one this build speaks.
    case unsupportedVersion(found: UInt32, supported: UInt32)
    /// The header-size field disagrees with this ABI version.
    case headerSizeMismatch(found: UInt32, expected: UInt32)
    /// The header's checksum does not match its contents (damage or a torn write).
    case headerChecksumMismatch(stored: UInt64, computed: UInt64)
    /// The ring-kind field is not a known ``RingKind``.
    case unknownRingKind(UInt32)
    /// The region holds a different kind of ring than the caller asked for.
    case ringKindMismatch(expected: RingKind, found: RingKind)
    /// Capacity is not a power of two in the allowed range.
    case invalidCapacity(Int)
    /// Slot size is zero, too large, or not a multiple of 8.
    case invalidSlotSize(Int)
    /// The slot size differs from the element type's stride.
    case slotSizeMismatch(expected: Int, found: Int)
    /// The slots hold a different element type (e.g. completions, not descriptors).
    case elementTypeMismatch(expected: UInt32, found: UInt32)
    /// An offset or size in the header differs from the geometry its kind,
    /// capacity and slot size imply.
    case layoutMismatch(field: String, expected: UInt64, found: UInt64)
    /// The region belongs to another incarnation than the one expected.
    case epochMismatch(expected: UInt64, found: UInt64)
    /// A memfd region lacks the seals that make it safe to map (a peer could
    /// shrink it under us and fault us with SIGBUS).
    case missingSeals(found: Int32)
    /// Huge pages were requested and none can be had.
    case hugePagesUnavailable(reason: String)
    /// Another live process already holds this exclusive ring role.
    case endpointInUse(role: String, ownerPID: Int32)
    /// The requested NUMA placement could not be applied.
    case placement(NUMAError)

    public var description: String {
        switch self {
        case .system(let error):
            "\(error)"
        case .alreadyExists(let path):
            "region \(path) already exists"
        case .notARegularFile(let type):
            "not a regular file (it is a \(type))"
        case .truncated(let size, let required):
            "region is truncated: file has \(size) bytes, layout needs \(required)"
        case .notInitialized:
            "region header is not initialized (creator unfinished or crashed while creating)"
        case .badMagic(let found):
            "bad magic 0x\(String(found, radix: 16)): not a FabricQueue region"
        case .unsupportedVersion(let found, let supported):
            "unsupported ABI version \(found) (this build speaks version \(supported))"
        case .headerSizeMismatch(let found, let expected):
            "header size \(found) does not match ABI (expected \(expected))"
        case .headerChecksumMismatch(let stored, let computed):
            "header checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))): header damaged"
        case .unknownRingKind(let raw):
            "unknown ring kind \(raw)"
        case .ringKindMismatch(let expected, let found):
            "region holds an \(found) ring, expected \(expected)"
        case .invalidCapacity(let capacity):
            "capacity \(capacity) is not a power of two in 2...\(RingGeometry.maximumCapacity)"
        case .invalidSlotSize(let size):
            "slot size \(size) is invalid (must be a multiple of 8 in 8...4096)"
        case .slotSizeMismatch(let expected, let found):
            "slot size \(found) does not match the element size \(expected)"
        case .elementTypeMismatch(let expected, let found):
            "ring holds element type \(found), expected \(expected)"
        case .layoutMismatch(let field, let expected, let found):
            "layout mismatch in \(field): header says \(found), geometry implies \(expected)"
        case .epochMismatch(let expected, let found):
            "region epoch 0x\(String(found, radix: 16)) is not the expected 0x\(String(expected, radix: 16)) (region was re-created)"
        case .missingSeals(let found):
            "memfd region is not sealed against shrinking (seals 0x\(String(found, radix: 16)))"
        case .hugePagesUnavailable(let reason):
            "huge pages unavailable: \(reason)"
        case .placement(let error):
            "NUMA placement failed: \(error)"
        case .endpointInUse(let role, let pid):
            "the \(role) role of this ring is held by live process \(pid)"
        }
    }
}
