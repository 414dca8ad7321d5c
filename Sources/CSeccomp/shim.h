// libseccomp (Debian: libseccomp-dev), as a Swift system library module.
// Its action constants are function-like macros Swift cannot import: one
// inline function each, no logic.
#ifndef C_SECCOMP_SHIM_H
#define C_SECCOMP_SHIM_H
#include <seccomp.h>
#include <stdint.h>
#include <sys/prctl.h>

static inline uint32_t cfq_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t cfq_scmp_act_log(void) { return SCMP_ACT_LOG; }
static inline uint32_t cfq_scmp_act_errno(uint16_t error) { return SCMP_ACT_ERRNO(error); }
// prctl(2) is variadic, which Swift cannot call: the calling thread's
// seccomp mode (0 none, 2 filter).
static inline int cfq_seccomp_mode(void) { return prctl(PR_GET_SECCOMP, 0, 0, 0, 0); }
#endif
