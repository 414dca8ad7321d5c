import Foundation
import InferenceEngine
import XCTest

/// Engine integrity: a valid signature by the trusted key is required before
/// any weight is believed; unsigned, tampered, truncated and foreign-key files
/// are refused with their own error, by the loader and by resnet-daemon.
final class EngineSignatureTests: XCTestCase {
    var dir = ""
    var key = EngineSigningKey()
    var signed = ""

    override func setUpWithError() throws {
        dir = Support.temporaryDirectory(name)
        key = EngineSigningKey()
        signed = try Support.seededEngine(.resnet18, in: dir, key: key)
    }

    func open(_ path: String) -> Result<EngineFile, EngineError> {
        Result { () throws(EngineError) in try EngineFile(path: path, verification: .trusting(key.publicKey)) }
    }

    func copy(_ transform: (inout [UInt8]) -> Void) -> String {
        var bytes = [UInt8](FileManager.default.contents(atPath: signed)!)
        transform(&bytes)
        let path = dir + "/copy-\(UInt32.random(in: 0...UInt32.max)).engine"
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func testValidSignatureOpensAndUnsignedIsRefused() throws {
        let engine = try open(signed).get()
        XCTAssertEqual(engine.signer, key.publicKey)
        let unsigned = try Support.seededEngine(.resnet18, in: Support.temporaryDirectory("unsigned"), key: nil)
        XCTAssertEqual(open(unsigned).failure, .unsigned)
        // Signing it afterwards (what scripts/import-pretrained does) makes it valid.
        try EngineWriter.sign(path: unsigned, with: key)
        XCTAssertNoThrow(try open(unsigned).get())
    }

    func testTamperedWeightsManifestOrSignatureAreRefused() throws {
        let header = try EngineFile(path: signed, verification: .skipVerification).header
        let weightByte = Int(header.tensorsOffset) + 1000
        XCTAssertEqual(open(copy { $0[weightByte] ^= 0x01 }).failure, .signatureMismatch)
        // A manifest edit that stays valid JSON: "relu" → "relU" would not decode, so flip a digit of the seed.
        XCTAssertEqual(
            open(
                copy { bytes in
                    let json = Array("\"seed\":7".utf8)
                    if let at = bytes.firstRange(of: json) { bytes[at.upperBound - 1] = UInt8(ascii: "8") }
                }
            ).failure, .signatureMismatch)
        XCTAssertEqual(open(copy { $0[$0.count - 20] ^= 0xFF }).failure, .signatureMismatch)  // signature bytes
    }

    /// Issue 13, item 7: a FIFO given as an engine used to hang the daemon
    /// forever, and a huge sparse file was hashed in full before anything
    /// refused it. Both are refused before a byte is read.
    func testNonRegularAndOversizedFilesAreRefusedBeforeReading() throws {
        let fifo = dir + "/engine.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertEqual(open(fifo).failure, .notARegularFile(path: fifo))
        XCTAssertEqual(open(dir).failure, .notARegularFile(path: dir))
        let sparse = dir + "/huge.engine"
        XCTAssertTrue(FileManager.default.createFile(atPath: sparse, contents: Data()))
        XCTAssertEqual(truncate(sparse, off_t(EngineFile.defaultMaximumSize) + 4096), 0)
        let start = Date()
        XCTAssertEqual(
            open(sparse).failure,
            .tooLarge(
                path: sparse, size: UInt64(EngineFile.defaultMaximumSize) + 4096, limit: UInt64(EngineFile.defaultMaximumSize)))
        XCTAssertLessThan(Date().timeIntervalSince(start), 1, "nothing was hashed")
        XCTAssertEqual(
            Result { () throws(EngineError) in
                try EngineFile(path: signed, verification: .trusting(key.publicKey), maximumSize: 1024)
            }.failure?.description.contains("more than the 1024-byte limit"), true)
    }

    func testTruncatedFilesAreRefused() throws {
        let size = FileManager.default.contents(atPath: signed)!.count
        for cut in [1, 128, 5000, size - 100] {
            guard case .truncated = open(copy { $0.removeLast(cut) }).failure else {
                return XCTFail("cutting \(cut) bytes gave \(String(describing: open(copy { $0.removeLast(cut) }).failure))")
            }
        }
        XCTAssertEqual(open(copy { $0.removeAll() }).failure, .truncated(expected: 64, actual: 0))
    }

    func testAnotherKeysSignatureIsRefused() throws {
        let other = EngineSigningKey()
        let path = copy { _ in }
        try EngineWriter.sign(path: path, with: other)
        XCTAssertEqual(open(path).failure, .untrustedKey(fingerprint: other.publicKey.fingerprint))
    }

    func testDaemonRefusesBadEnginesWithAMessage() throws {
        let pub = dir + "/trusted.key"
        try key.write(to: pub)
        let unsigned = try Support.seededEngine(.resnet18, in: Support.temporaryDirectory("daemon-unsigned"), key: nil)
        let header = try EngineFile(path: signed, verification: .skipVerification).header
        let cases: [(String, String)] = [
            (unsigned, "not signed"),
            (copy { $0[Int(header.tensorsOffset) + 64] ^= 0x10 }, "modified after signing"),
            (copy { $0.removeLast(4096) }, "truncated"),
        ]
        for (path, message) in cases {
            let r = try Support.run(
                Support.productsDirectory + "/resnet-daemon",
                ["--socket", dir + "/d.sock", "--public-key", pub + ".pub", "--engine", "1=\(path)"], timeout: 60)
            XCTAssertEqual(r.status, 2, "\(message): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("refusing engine") && r.stderr.contains(message), r.stderr)
            XCTAssertFalse(r.stdout.contains("listening"), r.stdout)
        }
    }
}

extension Result {
    var failure: Failure? { if case let .failure(e) = self { e } else { nil } }
}
