import CSeccomp
import FabricSystem
import Glibc

/// A seccomp-bpf allow-list for the whole process, built with libseccomp.
///
/// Every thread (`SCMP_FLTATR_CTL_TSYNC`), and every thread started later,
/// may make only the listed system calls; any other is refused with `EPERM`
/// (``Violation/refuse``) or allowed and written to the kernel's audit log
/// (``Violation/log``, for finding what a list misses). Installing sets
/// `no_new_privs` (libseccomp's default), as the kernel requires of an
/// unprivileged process. A filter can only be tightened afterwards, never
/// lifted.
package struct SystemCallFilter: Sendable {
    /// What happens to a call that is not on the list.
    package enum Violation: Sendable {
        /// Fails with `EPERM`; the process goes on.
        case refuse
        /// Goes through, and the kernel logs it.
        case log
    }

    /// One allowed call: by name, optionally only with its first argument
    /// equal to a value (say `socket` only for `AF_UNIX`).
    package struct Rule: Sendable, Hashable {
        package var name: String
        package var firstArgument: UInt64?

        package init(_ name: String, firstArgument: UInt64? = nil) {
            self.name = name
            self.firstArgument = firstArgument
        }
    }

    package var rules: [Rule]
    package var violation: Violation

    package init(rules: [Rule], violation: Violation) {
        self.rules = rules
        self.violation = violation
    }

    /// Why a filter was not installed.
    package enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// A name libseccomp does not know on this architecture.
        case unknownCall(String)
        /// A libseccomp call failed (it returns `-errno`).
        case library(call: String, errno: Int32)

        package var description: String {
            switch self {
            case .unknownCall(let name): "unknown system call \(name)"
            case .library(let call, let errno): "\(call): \(String(cString: strerror(errno)))"
            }
        }
    }

    /// Installs the filter on every thread of the process.
    package func install() throws(Failure) {
        let defaultAction = violation == .refuse ? cfq_scmp_act_errno(UInt16(EPERM)) : cfq_scmp_act_log()
        guard let context = seccomp_init(defaultAction) else { throw .library(call: "seccomp_init", errno: ENOMEM) }
        defer { seccomp_release(context) }
        func check(_ call: String, _ result: Int32) throws(Failure) {
            if result < 0 { throw .library(call: call, errno: -result) }
        }
        try check("seccomp_attr_set(TSYNC)", seccomp_attr_set(context, SCMP_FLTATR_CTL_TSYNC, 1))
        for rule in rules {
            let number = seccomp_syscall_resolve_name(rule.name)
            guard number != __NR_SCMP_ERROR else { throw .unknownCall(rule.name) }
            if let value = rule.firstArgument {
                var comparison = scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: value, datum_b: 0)
                try check(
                    "seccomp_rule_add(\(rule.name))",
                    seccomp_rule_add_array(context, cfq_scmp_act_allow(), number, 1, &comparison))
            } else {
                try check("seccomp_rule_add(\(rule.name))", seccomp_rule_add_array(context, cfq_scmp_act_allow(), number, 0, nil))
            }
        }
        try check("seccomp_load", seccomp_load(context))
    }

    /// Whether the calling thread runs under a seccomp filter
    /// (`prctl(PR_GET_SECCOMP)` is 2).
    package static var isActive: Bool { cfq_seccomp_mode() == 2 }
}
