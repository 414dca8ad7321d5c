#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The JSON of query answers (telemetry, models): one encoder setting and
/// one error mapping for every payload type.
package enum QueryPayload {
    /// `value` as JSON with sorted keys. The payloads are plain structs of
    /// numbers and strings, whose encoding cannot fail; `fallback` is what
    /// an impossible failure would send.
    package static func encode<T: Encodable>(_ value: T, fallback: String) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(value))) ?? Array(fallback.utf8)
    }

    /// A `T` from a daemon's JSON.
    ///
    /// - Throws: ``SessionError/malformed(_:)`` naming `what` when the bytes are not one.
    package static func decode<T: Decodable>(_ json: [UInt8], as type: T.Type, what: String) throws(SessionError) -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(json)) } catch { throw .malformed("\(what): \(error)") }
    }
}
