// libnuma (Debian: libnuma-dev), as a Swift system library module.
#ifndef C_NUMA_SHIM_H
#define C_NUMA_SHIM_H
#include <numa.h>
#include <numaif.h>
#endif
