extension Duration {
    /// Nanoseconds, saturating at 0 and `UInt64.max`.
    @inlinable
    package var saturatingNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (ns, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (total, carry) = ns.addingReportingOverflow(UInt64(max(attoseconds, 0) / 1_000_000_000))
        return carry ? .max : total
    }
}

/// Monotonic-clock nanoseconds `timeout` from now, saturating.
@inlinable
package func deadline(after timeout: Duration) -> UInt64 {
    let (sum, overflow) = monotonicNanoseconds().addingReportingOverflow(timeout.saturatingNanoseconds)
    return overflow ? .max : sum
}
