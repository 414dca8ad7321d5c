// Sizes and offsets of fabricqueue.h, for the Swift ABI test.
#ifndef FQ_ABI_PROBE_H
#define FQ_ABI_PROBE_H
#include <stddef.h>
#include <stdint.h>
typedef struct fq_abi_entry { const char *name; size_t value; } fq_abi_entry;
size_t fq_abi_entry_count(void);
const fq_abi_entry *fq_abi_entry_at(size_t i);
/// The C header's checksum of a region header (must equal the stored one).
uint64_t fq_abi_checksum(const void *header);
/// fq_attach's verdict on a mapping (0 = FQ_OK).
int fq_abi_attach_status(void *base, size_t size);
/// fq_tensor_header_init into `out` (64 bytes); its return value.
uint64_t fq_abi_tensor_header(void *out, uint8_t type, uint8_t rank, const uint32_t *dims, float scale, int32_t zero_point);
#endif
