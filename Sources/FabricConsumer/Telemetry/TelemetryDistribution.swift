/// A distribution the daemon measured: how many observations fell in each
/// bucket, their count and their sum. Latencies are in nanoseconds, batch
/// sizes in commands.
///
/// Only buckets that hold something are listed; each says its own bounds,
/// so a distribution stands alone (in JSON too). The daemon's latency
/// buckets are four per octave above 1 µs (each at most 25 % of its lower
/// bound wide), so a ``quantile(_:)``, interpolated within its bucket, is
/// within 25 % of the true value (and usually much closer).
public struct TelemetryDistribution: Sendable, Codable, Equatable {
    /// Observations greater than ``above`` and at most ``atMost``.
    public struct Bucket: Sendable, Codable, Equatable {
        /// The exclusive lower bound.
        public var above: UInt64
        /// The inclusive upper bound; nil for the overflow bucket (no bound).
        public var atMost: UInt64?
        /// Observations in the bucket.
        public var count: UInt64

        /// A bucket.
        public init(above: UInt64, atMost: UInt64?, count: UInt64) {
            self.above = above
            self.atMost = atMost
            self.count = count
        }
    }

    /// The non-empty buckets, lowest first.
    public var buckets: [Bucket] = []
    /// Observations in all.
    public var count: UInt64 = 0
    /// Their sum (wrapping, like a Prometheus counter that would reset).
    public var sum: UInt64 = 0

    /// An empty distribution.
    public init() {}

    /// The value below which a fraction `q` (0...1) of the observations
    /// fall, interpolated within its bucket; nil when there are none. In the
    /// overflow bucket it is that bucket's lower bound.
    public func quantile(_ q: Double) -> UInt64? {
        guard count > 0 else { return nil }
        let rank = max(1, (min(max(q, 0), 1) * Double(count)).rounded(.up))
        var seen: UInt64 = 0
        for bucket in buckets {
            let before = seen
            seen &+= bucket.count
            guard Double(seen) >= rank else { continue }
            // The buckets may come from another process (JSON): no
            // arithmetic here may trap on inconsistent bounds.
            guard let top = bucket.atMost, top > bucket.above, bucket.count > 0 else { return bucket.above }
            let fraction = min(max((rank - Double(before)) / Double(bucket.count), 0), 1)
            return bucket.above &+ UInt64((Double(top &- bucket.above) * fraction).rounded())
        }
        return buckets.last.map { $0.atMost ?? $0.above }
    }

    /// Observations at most `bound` (exact when `bound` is a bucket boundary,
    /// as Prometheus's cumulative `le` buckets need).
    public func count(atMost bound: UInt64) -> UInt64 {
        var total: UInt64 = 0
        for bucket in buckets {
            guard let top = bucket.atMost, top <= bound else { break }
            total &+= bucket.count
        }
        return total
    }

    /// The mean, nil when there are no observations.
    public var mean: Double? { count > 0 ? Double(sum) / Double(count) : nil }
}
