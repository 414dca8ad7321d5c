import FabricSystem

/// Busy-wait helpers for polling loops.
public enum SpinWait {
    /// The CPU's spin-wait hint (x86 `PAUSE`, Arm `YIELD`, RISC-V `pause`):
    /// lets a sibling hyper-thread run and saves power while polling.
    @inlinable @inline(__always)
    public static func pause() { cpuRelax() }
}
