import Synchronization

extension Atomic where Value == UInt64 {
    /// Adds `n` for a counter with **one writer** (the poll thread): a
    /// relaxed load and a relaxed store, no read-modify-write, so no locked
    /// instruction on the hot path. Readers on other threads see each store
    /// whole (it is atomic) and at worst one update late.
    @inline(__always)
    func advance(by n: UInt64 = 1) {
        store(load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }
}

/// How a ``TelemetryHistogram`` maps a value to its bucket.
enum HistogramScale: Sendable {
    /// Nanoseconds: one bucket up to 1 µs, then four linear buckets per
    /// octave (each at most 25 % of its lower bound wide) up to 2²⁴ µs
    /// (16.8 s), then overflow.
    case nanoseconds
    /// Commands per batch: 1, 2, 3, 4, then two buckets per octave up to
    /// 4096, then overflow.
    case batchSize

    /// Buckets, overflow included.
    var bucketCount: Int {
        switch self {
        case .nanoseconds: 98
        case .batchSize: 25
        }
    }

    /// The bucket `value` falls in (`value` ≤ its upper bound, > the one before).
    @inline(__always)
    func bucket(of value: UInt64) -> Int {
        switch self {
        case .nanoseconds:
            // Quarter microseconds, rounded up: q ≤ 4 is ≤ 1 µs.
            let q = value / 250 &+ (value % 250 == 0 ? 0 : 1)
            guard q > 4 else { return 0 }
            let octave = 63 - (q - 1).leadingZeroBitCount  // ≥ 2
            guard octave <= 25 else { return 97 }
            let sub = Int(((q - 1) >> UInt64(octave - 2)) & 3)
            return 1 + (octave - 2) * 4 + sub
        case .batchSize:
            guard value > 4 else { return value == 0 ? 0 : Int(value) - 1 }
            let octave = 63 - (value - 1).leadingZeroBitCount  // ≥ 2
            guard octave <= 11 else { return 24 }
            let sub = Int(((value - 1) >> UInt64(octave - 1)) & 1)
            return 4 + (octave - 2) * 2 + sub
        }
    }

    /// The inclusive upper bound of `bucket` (nil for the overflow bucket).
    func upperBound(of bucket: Int) -> UInt64? {
        guard bucket < bucketCount - 1 else { return nil }
        switch self {
        case .nanoseconds:
            guard bucket > 0 else { return 1_000 }
            let octave = 2 + (bucket - 1) / 4, sub = UInt64((bucket - 1) % 4)
            return 250 * ((1 << UInt64(octave)) + (sub + 1) << UInt64(octave - 2))
        case .batchSize:
            guard bucket > 3 else { return UInt64(bucket + 1) }
            let octave = 2 + (bucket - 4) / 2, sub = UInt64((bucket - 4) % 2)
            return (1 << UInt64(octave)) + (sub + 1) << UInt64(octave - 1)
        }
    }

    /// The exclusive lower bound of `bucket`.
    func lowerBound(of bucket: Int) -> UInt64 {
        bucket == 0 ? 0 : upperBound(of: bucket - 1) ?? 0
    }
}

/// A histogram with fixed buckets and **one writer** (the poll thread):
/// ``record(_:)`` is a bucket computation and two relaxed load/store pairs,
/// no lock, allocation or system call. Any thread may take a
/// ``TelemetryDistribution`` of it at any time; the buckets are read one by
/// one, so a snapshot taken while the writer runs may be a few observations
/// behind in some buckets, never torn within one.
final class TelemetryHistogram: @unchecked Sendable {
    // @unchecked: the buckets are atomics, written by one thread (see above)
    let scale: HistogramScale
    private let buckets: UnsafeMutablePointer<Atomic<UInt64>>
    private let sum = Atomic<UInt64>(0)

    init(_ scale: HistogramScale) {
        self.scale = scale
        buckets = .allocate(capacity: scale.bucketCount)
        for i in 0..<scale.bucketCount { (buckets + i).initialize(to: Atomic<UInt64>(0)) }
    }

    deinit {
        buckets.deinitialize(count: scale.bucketCount)
        buckets.deallocate()
    }

    /// Writer only: counts one observation of `value`.
    @inline(__always)
    func record(_ value: UInt64) {
        buckets[scale.bucket(of: value)].advance()
        sum.advance(by: value)
    }

    /// The distribution so far (any thread).
    func snapshot() -> TelemetryDistribution {
        var result = TelemetryDistribution()
        for i in 0..<scale.bucketCount {
            // Relaxed: a monitoring snapshot, nothing is ordered by it.
            let count = buckets[i].load(ordering: .relaxed)
            guard count > 0 else { continue }
            result.buckets.append(
                TelemetryDistribution.Bucket(above: scale.lowerBound(of: i), atMost: scale.upperBound(of: i), count: count))
            result.count &+= count
        }
        // Relaxed: as above.
        result.sum = sum.load(ordering: .relaxed)
        return result
    }
}
