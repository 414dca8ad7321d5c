// Exposes the C header's sizes and offsets to Swift, where a test compares
// them with MemoryLayout and RegionLayout (the two definitions of the ABI).
#include "fabricqueue.h"
#include "abi_probe.h"

#define ENTRY(type, field) { #type "." #field, offsetof(type, field) }
static const fq_abi_entry entries[] = {
    { "sizeof.fq_region_header", sizeof(fq_region_header) },
    { "sizeof.fq_control", sizeof(fq_control) },
    { "sizeof.fq_descriptor", sizeof(fq_descriptor) },
    ENTRY(fq_region_header, magic), ENTRY(fq_region_header, abi_version), ENTRY(fq_region_header, header_size),
    ENTRY(fq_region_header, region_size), ENTRY(fq_region_header, ring_kind), ENTRY(fq_region_header, element_tag),
    ENTRY(fq_region_header, slot_size), ENTRY(fq_region_header, capacity), ENTRY(fq_region_header, control_offset),
    ENTRY(fq_region_header, slots_offset), ENTRY(fq_region_header, sequences_offset),
    ENTRY(fq_region_header, creator_pid), ENTRY(fq_region_header, flags), ENTRY(fq_region_header, epoch),
    ENTRY(fq_region_header, created_at), ENTRY(fq_region_header, checksum),
    ENTRY(fq_control, head), ENTRY(fq_control, tail), ENTRY(fq_control, data_waiters),
    ENTRY(fq_control, space_waiters), ENTRY(fq_control, data_futex), ENTRY(fq_control, space_futex),
    ENTRY(fq_control, producer_owner), ENTRY(fq_control, consumer_owner),
    ENTRY(fq_descriptor, command_id), ENTRY(fq_descriptor, model_id), ENTRY(fq_descriptor, flags), ENTRY(fq_descriptor, priority), ENTRY(fq_descriptor, opcode),
    ENTRY(fq_descriptor, input_offset), ENTRY(fq_descriptor, output_offset), ENTRY(fq_descriptor, input_size),
    ENTRY(fq_descriptor, output_capacity), ENTRY(fq_descriptor, submit_timestamp),
    ENTRY(fq_descriptor, producer_id), ENTRY(fq_descriptor, deadline_us), ENTRY(fq_descriptor, user_data),
    { "sizeof.fq_completion", sizeof(fq_completion) },
    ENTRY(fq_completion, command_id), ENTRY(fq_completion, user_data), ENTRY(fq_completion, status),
    ENTRY(fq_completion, output_size), ENTRY(fq_completion, submit_timestamp), ENTRY(fq_completion, pickup_timestamp),
    ENTRY(fq_completion, handler_start_timestamp), ENTRY(fq_completion, handler_end_timestamp),
    ENTRY(fq_completion, producer_id), ENTRY(fq_completion, detail),
    { "const.hello_magic", FQ_HELLO_MAGIC }, { "const.reply_magic", FQ_REPLY_MAGIC },
    { "const.data_magic", FQ_DATA_MAGIC }, { "const.session_version", FQ_SESSION_VERSION },
    { "const.role_lock_producer", (size_t)FQ_ROLE_LOCK_PRODUCER }, { "const.role_lock_consumer", (size_t)FQ_ROLE_LOCK_CONSUMER },
    { "const.sequence_abandoned", (size_t)FQ_SEQUENCE_ABANDONED },
    { "sizeof.fq_hello", sizeof(fq_hello) }, { "sizeof.fq_reply", sizeof(fq_reply) },
    ENTRY(fq_hello, protocol_version), ENTRY(fq_hello, purpose), ENTRY(fq_hello, client_pid),
    ENTRY(fq_reply, status), ENTRY(fq_reply, session_id), ENTRY(fq_reply, descriptor_count),
    ENTRY(fq_reply, payload_size), ENTRY(fq_reply, reason),
    { "tag.submission_ring", FQ_SESSION_TAG_SUBMISSION_RING }, { "tag.completion_ring", FQ_SESSION_TAG_COMPLETION_RING },
    { "tag.data_region", FQ_SESSION_TAG_DATA_REGION }, { "tag.daemon_doorbell", FQ_SESSION_TAG_DAEMON_DOORBELL },
    { "tag.session_doorbell", FQ_SESSION_TAG_SESSION_DOORBELL },
    { "const.data_header_page", FQ_DATA_HEADER_PAGE }, ENTRY(fq_data_header, slot_size),
    ENTRY(fq_data_header, slot_count), ENTRY(fq_data_header, epoch), ENTRY(fq_data_header, checksum),
    { "sizeof.fq_tensor_header", sizeof(fq_tensor_header) }, { "const.tensor_magic", FQ_TENSOR_MAGIC },
    { "const.flag_tensor_header", FQ_FLAG_TENSOR_HEADER },
    ENTRY(fq_tensor_header, element_type), ENTRY(fq_tensor_header, rank), ENTRY(fq_tensor_header, dims),
    ENTRY(fq_tensor_header, scale), ENTRY(fq_tensor_header, zero_point), ENTRY(fq_tensor_header, data_offset),
    ENTRY(fq_tensor_header, data_bytes),
    { "sizeof.fq_tensor_mismatch", sizeof(fq_tensor_mismatch) }, { "const.tensor_mismatch_magic", FQ_TENSOR_MISMATCH_MAGIC },
    ENTRY(fq_tensor_mismatch, accepted_types), ENTRY(fq_tensor_mismatch, expected_rank),
    ENTRY(fq_tensor_mismatch, received_type), ENTRY(fq_tensor_mismatch, received_rank),
    ENTRY(fq_tensor_mismatch, expected_dims), ENTRY(fq_tensor_mismatch, received_dims),
    { "type.f32", FQ_TENSOR_F32 }, { "type.f16", FQ_TENSOR_F16 }, { "type.bf16", FQ_TENSOR_BF16 },
    { "type.i8", FQ_TENSOR_I8 }, { "type.u8", FQ_TENSOR_U8 },
    { "invalid.tensor_header", FQ_INVALID_TENSOR_HEADER }, { "invalid.tensor_quantization", FQ_INVALID_TENSOR_QUANTIZATION },
    { "invalid.tensor_size", FQ_INVALID_TENSOR_SIZE }, { "invalid.tensor_type", FQ_INVALID_TENSOR_TYPE },
    { "invalid.tensor_shape", FQ_INVALID_TENSOR_SHAPE },
};

size_t fq_abi_entry_count(void) { return sizeof entries / sizeof entries[0]; }
const fq_abi_entry *fq_abi_entry_at(size_t i) { return i < fq_abi_entry_count() ? &entries[i] : NULL; }
uint64_t fq_abi_checksum(const void *header) { return fq_header_checksum(header); }
int fq_abi_attach_status(void *base, size_t size) { fq_ring r; return (int)fq_attach(base, size, &r); }
uint64_t fq_abi_tensor_header(void *out, uint8_t type, uint8_t rank, const uint32_t *dims, float scale, int32_t zero_point) {
    return fq_tensor_header_init((fq_tensor_header *)out, type, rank, dims, scale, zero_point);
}
