import Foundation
import Glibc

/// A strict reader of the Prometheus text exposition format (0.0.4), for
/// checking what a `/metrics` endpoint serves: every line must be a comment,
/// a `# HELP`/`# TYPE` line or a well-formed sample; every sample belongs to
/// a family whose `# TYPE` came first (once); a histogram's buckets are
/// cumulative, end with `le="+Inf"`, and that bucket equals its `_count`.
public struct PrometheusText {
    /// Family name → type (`counter`, `gauge`, `histogram`, ...).
    public private(set) var types: [String: String] = [:]
    /// Series (`name{label="v",...}` with labels sorted) → value.
    public private(set) var samples: [String: Double] = [:]

    /// The text is not the exposition format (the line and what is wrong).
    public struct Malformed: Error, CustomStringConvertible {
        /// The line and what is wrong with it.
        public let description: String
    }

    public init(parsing text: String) throws {
        var histogramBuckets: [String: [(le: Double, count: Double)]] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            func fail(_ why: String) -> Malformed { Malformed(description: "line \(number + 1): \(why): \(line)") }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard parts.count >= 3, parts[0] == "#" else { continue }
                guard Self.isName(parts[2]) else { throw fail("bad metric name") }
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw fail("bad type")
                    }
                    guard types[parts[2]] == nil else { throw fail("second TYPE for \(parts[2])") }
                    types[parts[2]] = parts[3]
                }
                continue
            }
            // name{labels} value
            var name = "", labels: [(String, String)] = [], rest = Substring(line)
            if let brace = line.firstIndex(of: "{") {
                name = String(line[..<brace])
                guard let close = line.lastIndex(of: "}") else { throw fail("unclosed labels") }
                labels = try Self.labels(String(line[line.index(after: brace)..<close]), fail)
                rest = line[line.index(after: close)...]
            } else {
                guard let space = line.firstIndex(of: " ") else { throw fail("no value") }
                name = String(line[..<space])
                rest = line[space...]
            }
            guard Self.isName(name) else { throw fail("bad metric name") }
            let fields = rest.split(separator: " ")
            guard fields.count == 1 || fields.count == 2, let value = Self.value(String(fields[0])) else {
                throw fail("bad value")
            }
            var family = name
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                let base = String(name.dropLast(suffix.count))
                if types[base] == "histogram" || types[base] == "summary" { family = base }
            }
            guard types[family] != nil else { throw fail("sample before its TYPE") }
            let key = Self.key(name, labels)
            guard samples[key] == nil else { throw fail("duplicate series") }
            samples[key] = value
            if types[family] == "histogram" && name.hasSuffix("_bucket") {
                guard let le = labels.first(where: { $0.0 == "le" }), let bound = Self.value(le.1) else {
                    throw fail("bucket without a numeric le")
                }
                let series = Self.key(family, labels.filter { $0.0 != "le" })
                histogramBuckets[series, default: []].append((bound, value))
            }
        }
        for (series, buckets) in histogramBuckets {
            guard buckets.last?.le == .infinity else { throw Malformed(description: "\(series): no +Inf bucket last") }
            for (a, b) in zip(buckets, buckets.dropFirst()) where !(a.le < b.le && a.count <= b.count) {
                throw Malformed(description: "\(series): buckets not ascending and cumulative")
            }
            let countKey = series.replacingOccurrences(of: "{", with: "_count{", options: [], range: series.range(of: "{"))
            let count = samples[series.contains("{") ? countKey : series + "_count"]
            guard count == buckets.last?.count else { throw Malformed(description: "\(series): +Inf bucket != _count") }
        }
    }

    /// The value of series `name` with `labels` (in any order).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples[Self.key(name, labels.map { ($0.key, $0.value) })]
    }

    static func key(_ name: String, _ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return name }
        return name + "{" + labels.sorted { $0.0 < $1.0 }.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
    }

    static func isName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first == "_" || first == ":" || first.properties.isAlphabetic
        else { return false }
        return s.unicodeScalars.allSatisfy {
            $0.isASCII && ($0 == "_" || $0 == ":" || $0.properties.isAlphabetic || ("0"..."9").contains($0))
        }
    }

    static func value(_ s: String) -> Double? {
        switch s {
        case "+Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: return Double(s)
        }
    }

    static func labels(_ text: String, _ fail: (String) -> Malformed) throws -> [(String, String)] {
        var result: [(String, String)] = []
        var i = text.startIndex
        while i < text.endIndex {
            guard let equals = text[i...].firstIndex(of: "=") else { throw fail("label without =") }
            let name = String(text[i..<equals])
            guard isName(name), text.index(after: equals) < text.endIndex, text[text.index(after: equals)] == "\"" else {
                throw fail("bad label")
            }
            var j = text.index(equals, offsetBy: 2)
            var value = ""
            while j < text.endIndex && text[j] != "\"" {
                if text[j] == "\\" {
                    j = text.index(after: j)
                    guard j < text.endIndex else { throw fail("dangling escape") }
                }
                value.append(text[j])
                j = text.index(after: j)
            }
            guard j < text.endIndex else { throw fail("unterminated label value") }
            result.append((name, value))
            i = text.index(after: j)
            if i < text.endIndex {
                guard text[i] == "," else { throw fail("labels not separated by commas") }
                i = text.index(after: i)
            }
        }
        return result
    }
}

/// `GET path` over HTTP/1.1 to 127.0.0.1:`port` with a plain socket (the
/// test is the client; the server under test is the real one): the status
/// code and body. Fails the call past `timeout` seconds.
public func httpGet(port: Int, path: String, timeout: Double = 10) throws -> (status: Int, body: String) {
    struct Failed: Error, CustomStringConvertible { let description: String }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Failed(description: "socket: errno \(errno)") }
    defer { close(fd) }
    var time = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw Failed(description: "connect: errno \(errno)") }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
        throw Failed(description: "send: errno \(errno)")
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n < 0 { throw Failed(description: "recv: errno \(errno)") }
        if n == 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let headerEnd = text.range(of: "\r\n\r\n") else { throw Failed(description: "no header end: \(text)") }
    let statusLine = text[..<headerEnd.lowerBound].split(separator: "\r\n").first ?? ""
    let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    var body = String(text[headerEnd.upperBound...])
    if text[..<headerEnd.lowerBound].lowercased().contains("transfer-encoding: chunked") { body = dechunk(body) }
    return (status, body)
}

/// The body of a chunked transfer encoding.
private func dechunk(_ chunked: String) -> String {
    var result = "", rest = Substring(chunked)
    while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
        let start = lineEnd.upperBound
        let utf8 = rest.utf8
        let end = utf8.index(start, offsetBy: size)
        result += String(rest[start..<end])
        rest = rest[end...].dropFirst(2)
    }
    return result
}
