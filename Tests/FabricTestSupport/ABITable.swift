import CFabricQueueABI

/// The offsets, sizes and constants `fabricqueue.h` defines, by name
/// (`"fq_descriptor.model_id"`, `"sizeof.fq_hello"`, `"tag.data_region"`…), as
/// the C probe in CFabricQueueABI reports them.
public func cABITable() -> [String: Int] {
    var table: [String: Int] = [:]
    for i in 0..<fq_abi_entry_count() {
        guard let entry = fq_abi_entry_at(i), let name = entry.pointee.name else { continue }
        table[String(cString: name)] = entry.pointee.value
    }
    return table
}
