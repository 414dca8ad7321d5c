import Foundation

/// A class index with its probability.
public struct ClassScore: Equatable, Sendable, Codable {
    /// Class index.
    public var index: Int
    /// Its probability (or score).
    public var probability: Float

    /// A class with its probability.
    public init(index: Int, probability: Float) {
        self.index = index
        self.probability = probability
    }
}

/// Softmax and top-k over logits.
public enum Classification {
    /// Numerically stable softmax (max subtracted, sum in double) into `probabilities`.
    public static func softmax(_ logits: UnsafeBufferPointer<Float>, into probabilities: UnsafeMutableBufferPointer<Float>) {
        precondition(probabilities.count >= logits.count)
        var peak = -Float.infinity
        for v in logits where v > peak { peak = v }
        var sum = 0.0
        for (i, v) in logits.enumerated() {
            let e = expf(v - peak)
            probabilities[i] = e
            sum += Double(e)
        }
        let scale = sum > 0 && sum.isFinite ? Float(1 / sum) : 0
        for i in 0..<logits.count { probabilities[i] *= scale }
    }

    /// The `k` largest values, largest first (ties: lower index first). NaN never wins.
    public static func top(_ k: Int, of values: UnsafeBufferPointer<Float>) -> [ClassScore] {
        [ClassScore](unsafeUninitializedCapacity: max(k, 0)) { buffer, count in
            count = top(of: values, into: buffer)
        }
    }

    /// Writes the `best.count` largest values into `best`, largest first, and
    /// returns how many it wrote (fewer when `values` has fewer non-NaN
    /// entries). Allocates nothing: the daemon's handler calls it per image.
    public static func top(of values: UnsafeBufferPointer<Float>, into best: UnsafeMutableBufferPointer<ClassScore>) -> Int {
        let k = best.count
        var count = 0
        for (i, v) in values.enumerated() where !v.isNaN {
            if count == k && (k == 0 || v <= best[k - 1].probability) { continue }
            // Insertion into the sorted prefix; the smallest falls off when full.
            var at = min(count, k - 1)
            while at > 0 && best[at - 1].probability < v {
                best[at] = best[at - 1]
                at -= 1
            }
            best[at] = ClassScore(index: i, probability: v)
            count = min(count + 1, k)
        }
        return count
    }
}

/// The result a daemon writes into a command's output slot (little-endian):
///
/// ```
///  0  magic       u32 = 0x31434651 ("QFC1")
///  4  classCount  u32
///  8  top5 index  u32 × 5      by probability, largest first
/// 28  top5 prob   f32 × 5      softmax of the logits
/// 48  reserved    16 bytes = 0
/// 64  logits      f32 × classCount
/// ```
public enum ClassificationRecord {
    /// The record's first four bytes.
    public static let magic: UInt32 = 0x3143_4651
    /// Bytes before the logits.
    public static let headerSize = 64
    /// Classes in the record's top list.
    public static let topCount = 5

    /// Bytes a record for `classCount` classes needs.
    public static func byteCount(classCount: Int) -> Int { headerSize + 4 * classCount }

    /// Writes `logits` and their top-5 into `output`; `scratch` holds `logits.count` floats and
    /// `top` ``topCount`` scores. Allocates nothing. Returns the bytes written.
    public static func write(
        logits: UnsafeBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>,
        top: UnsafeMutableBufferPointer<ClassScore>, into output: UnsafeMutableRawBufferPointer
    ) -> Int {
        let n = logits.count
        precondition(output.count >= byteCount(classCount: n) && top.count == topCount)
        Classification.softmax(logits, into: scratch)
        let found = Classification.top(of: UnsafeBufferPointer(scratch), into: top)
        output.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        output.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 4, as: UInt32.self)
        for i in 0..<topCount {
            let s = i < found ? top[i] : ClassScore(index: 0, probability: 0)
            output.storeBytes(of: UInt32(s.index).littleEndian, toByteOffset: 8 + 4 * i, as: UInt32.self)
            output.storeBytes(of: s.probability.bitPattern.littleEndian, toByteOffset: 28 + 4 * i, as: UInt32.self)
        }
        for i in 48..<64 { output[i] = 0 }
        for i in 0..<n { output.storeBytes(of: logits[i].bitPattern.littleEndian, toByteOffset: 64 + 4 * i, as: UInt32.self) }
        return byteCount(classCount: n)
    }

    /// A record read back from an output buffer (untrusted bytes).
    public struct Parsed: Sendable {
        /// The daemon's top-5.
        public var top: [ClassScore]
        /// All logits.
        public var logits: [Float]
    }

    /// Parses a record; nil when it is too short, has the wrong magic or the wrong class count.
    public static func parse(_ bytes: UnsafeRawBufferPointer, classCount: Int) -> Parsed? {
        guard bytes.count >= byteCount(classCount: classCount),
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic,
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) == UInt32(classCount)
        else { return nil }
        let top = (0..<topCount).map { i in
            ClassScore(
                index: Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 + 4 * i, as: UInt32.self))),
                probability: Float(
                    bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 28 + 4 * i, as: UInt32.self))))
        }
        let logits = (0..<classCount).map { i in
            Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 64 + 4 * i, as: UInt32.self)))
        }
        return Parsed(top: top, logits: logits)
    }
}
