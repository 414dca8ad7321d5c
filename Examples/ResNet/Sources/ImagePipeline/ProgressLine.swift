import Foundation

/// Progress on standard error: a rewritten line on a terminal, otherwise a
/// line at each quarter (so logs stay short).
public struct ProgressLine {
    let label: String
    let isTerminal = isatty(2) != 0
    var lastQuarter = 0

    /// A progress line prefixed with `label`.
    public init(label: String) { self.label = label }

    /// Reports `done` of `total` images.
    public mutating func update(_ done: Int, _ total: Int) {
        if isTerminal {
            emit("\r  \(label): \(done)/\(total) images" + (done == total ? "\n" : ""))
        } else {
            let quarter = done * 4 / max(total, 1)
            if quarter > lastQuarter {
                lastQuarter = quarter
                emit("  \(label): \(done)/\(total) images\n")
            }
        }
    }

    func emit(_ text: String) {
        var line = text
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

/// The top-5 of each image, one block per image.
public func formatPredictions(_ results: [ImageResult]) -> String {
    results.map { r in
        "  \(r.image):\n"
            + r.top5.map { p in
                "    \(String(format: "%6.2f", p.probability * 100)) %  \(p.label)"
            }.joined(separator: "\n")
    }.joined(separator: "\n")
}
