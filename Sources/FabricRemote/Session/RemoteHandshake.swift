import Crypto
import FabricSession
import FabricSystem

/// The remote handshake (see ``RemoteProtocol``), both sides.
package enum RemoteHandshake {
    /// Controller side: sends the hello with `key`'s public half, signs the
    /// daemon's challenge, and returns the grant, all within `timeout`.
    ///
    /// - Throws: ``RemoteLinkError``: the daemon's refusal
    ///   (``RemoteLinkError/rejected(_:reason:)``), a transport failure, a
    ///   timeout, or a malformed answer.
    package static func request(
        over link: RemoteLink, key: RemoteSigningKey, timeout: Duration
    )
        throws(RemoteLinkError) -> RemoteGrant
    {
        let end = deadline(after: timeout)
        func left() -> Duration {
            let now = monotonicNanoseconds()
            return .nanoseconds(Int64(clamping: end > now ? end - now : 0))
        }
        try link.send(.hello, bytes: hello(key: key.publicKey))
        try link.send(.proof, bytes: proof(answering: try link.receive(.challenge, timeout: left()), key: key))

        return try grant(inVerdict: try link.receive(.verdict, timeout: left()))
    }

    /// Controller side: the hello for `key`.
    package static func hello(key: RemotePublicKey, version: UInt32 = RemoteProtocol.version) -> [UInt8] {
        var hello = WireWriter(size: RemoteProtocol.helloSize)
        hello.put(RemoteProtocol.helloMagic, at: 0)
        hello.put(version, at: 8)
        hello.put(key.rawRepresentation, at: 16)
        return hello.bytes
    }

    /// Controller side: the proof answering `challenge` (the daemon's
    /// refusal, if it is one, is thrown).
    package static func proof(answering challenge: [UInt8], key: RemoteSigningKey) throws(RemoteLinkError) -> [UInt8] {
        let reader = WireReader(bytes: challenge)
        guard reader.bytes.count == RemoteProtocol.challengeSize,
            reader.get(UInt64.self, at: 0) == RemoteProtocol.challengeMagic,
            let status = reader.get(UInt32.self, at: 12), let nonce = reader.get(32, at: 16)
        else { throw .protocolViolation("challenge of \(reader.bytes.count) bytes") }
        try check(
            status: status, version: reader.get(UInt32.self, at: 8),
            reason: reader.text(at: 48, capacity: RemoteProtocol.reasonCapacity))
        var proof = WireWriter(size: RemoteProtocol.proofSize)
        proof.put(RemoteProtocol.proofMagic, at: 0)
        let signature: [UInt8]
        do { signature = try key.signature(for: RemoteProtocol.signedMessage(nonce: nonce, key: key.publicKey)) } catch {
            throw .protocolViolation("\(error)")
        }
        proof.put(signature, at: 8)
        return proof.bytes
    }

    /// Controller side: the grant in a verdict (the daemon's refusal, if it is one, is thrown).
    package static func grant(inVerdict bytes: [UInt8]) throws(RemoteLinkError) -> RemoteGrant {
        let verdict = WireReader(bytes: bytes)
        guard verdict.bytes.count >= RemoteProtocol.verdictSize, verdict.get(UInt64.self, at: 0) == RemoteProtocol.verdictMagic,
            let verdictStatus = verdict.get(UInt32.self, at: 12)
        else { throw .protocolViolation("verdict of \(verdict.bytes.count) bytes") }
        try check(status: verdictStatus, version: verdict.get(UInt32.self, at: 8), reason: verdict.text(at: 56, capacity: 64))
        guard let sessionID = verdict.get(UInt64.self, at: 16),
            let submissions = verdict.get(UInt32.self, at: 24), let completions = verdict.get(UInt32.self, at: 28),
            let slotSize = verdict.get(UInt64.self, at: 32), let slotCount = verdict.get(UInt32.self, at: 40),
            let interval = verdict.get(UInt32.self, at: 44), let silence = verdict.get(UInt32.self, at: 48)
        else { throw .protocolViolation("short verdict") }
        // The geometry is checked again where the regions are made (RingGeometry, DataRegionGeometry).
        // A daemon may not stretch the time its controller waits for it
        // beyond `largestPeerTimeout`: pending commands must fail, not hang.
        guard slotSize <= DataRegionGeometry.maximumSlotSize, interval >= 1, silence >= 2 * interval,
            silence <= RemoteProtocol.largestPeerTimeoutMilliseconds
        else {
            throw .protocolViolation("granted slot size \(slotSize), heartbeat \(interval) ms, timeout \(silence) ms")
        }
        return RemoteGrant(
            sessionID: sessionID, submissionCapacity: Int(submissions), completionCapacity: Int(completions),
            slotSize: Int(slotSize), slotCount: Int(slotCount),
            heartbeat: RemoteHeartbeat(interval: .milliseconds(Int64(interval)), peerTimeout: .milliseconds(Int64(silence))),
            models: Array(verdict.bytes[RemoteProtocol.verdictSize...]))
    }

    // Daemon side, one step per message, so that one daemon thread can run
    // many handshakes at once and a slow peer holds up no other.

    /// A refusal: `message` (``RemoteMessage/challenge`` or
    /// ``RemoteMessage/verdict``) with status `why` and `reason`.
    package static func refusal(_ message: RemoteMessage, _ why: SessionRejection, _ reason: String) -> [UInt8] {
        let isChallenge = message == .challenge
        var refusal = WireWriter(size: isChallenge ? RemoteProtocol.challengeSize : RemoteProtocol.verdictSize)
        refusal.put(isChallenge ? RemoteProtocol.challengeMagic : RemoteProtocol.verdictMagic, at: 0)
        refusal.put(RemoteProtocol.version, at: 8)
        refusal.put(why.rawValue, at: 12)
        refusal.put(text: reason, at: isChallenge ? 48 : 56, capacity: RemoteProtocol.reasonCapacity)
        return refusal.bytes
    }

    /// Daemon side: checks a hello. Returns the controller's key, a fresh
    /// nonce and the challenge to send; or throws the refusal (send
    /// ``refusal(_:_:_:)`` of `.challenge` with it, then close). Whether the
    /// key is admitted is decided only with the proof
    /// (``checkProof(_:key:nonce:keys:)``), so a peer without the private
    /// key cannot probe which keys are.
    package static func challenge(
        forHello bytes: [UInt8]
    ) throws(RemoteLinkError) -> (
        key: RemotePublicKey, nonce: [UInt8], challenge: [UInt8]
    ) {
        let hello = WireReader(bytes: bytes)
        guard hello.bytes.count == RemoteProtocol.helloSize, hello.get(UInt64.self, at: 0) == RemoteProtocol.helloMagic,
            let version = hello.get(UInt32.self, at: 8), let raw = hello.get(32, at: 16)
        else { throw .rejected(.malformed, reason: "not a FabricQueue remote hello") }
        guard version == RemoteProtocol.version else {
            throw .rejected(.versionMismatch, reason: "daemon speaks \(RemoteProtocol.version), controller \(version)")
        }
        guard let key = RemotePublicKey(rawRepresentation: raw) else {
            throw .rejected(.malformed, reason: "not an Ed25519 public key")
        }
        // 256 bits from BoringSSL's CSPRNG: fresh for every connection, so a recorded proof is useless.
        let nonce = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        var challenge = WireWriter(size: RemoteProtocol.challengeSize)
        challenge.put(RemoteProtocol.challengeMagic, at: 0)
        challenge.put(RemoteProtocol.version, at: 8)
        challenge.put(nonce, at: 16)
        return (key, nonce, challenge.bytes)
    }

    /// Daemon side: checks a proof of `key` over `nonce`, then that `keys`
    /// admits the key; throws the refusal (send ``refusal(_:_:_:)`` of
    /// `.verdict` with it, then close).
    package static func checkProof(
        _ bytes: [UInt8], key: RemotePublicKey, nonce: [UInt8], keys: AuthorizedKeys
    ) throws(RemoteLinkError) {
        let proof = WireReader(bytes: bytes)
        guard proof.bytes.count == RemoteProtocol.proofSize, proof.get(UInt64.self, at: 0) == RemoteProtocol.proofMagic,
            let signature = proof.get(64, at: 8)
        else { throw .rejected(.malformed, reason: "not a FabricQueue remote proof") }
        guard key.isValidSignature(signature, for: RemoteProtocol.signedMessage(nonce: nonce, key: key)) else {
            throw .rejected(.notAllowed, reason: "bad signature for key \(key.fingerprint)")
        }
        guard keys.contains(key) else { throw .rejected(.notAllowed, reason: "key \(key.fingerprint) not authorized") }
    }

    /// Daemon side: the accepting verdict for `grant`.
    package static func verdict(_ grant: RemoteGrant) -> [UInt8] {
        var verdict = WireWriter(size: RemoteProtocol.verdictSize)
        verdict.put(RemoteProtocol.verdictMagic, at: 0)
        verdict.put(RemoteProtocol.version, at: 8)
        verdict.put(grant.sessionID, at: 16)
        verdict.put(UInt32(clamping: grant.submissionCapacity), at: 24)
        verdict.put(UInt32(clamping: grant.completionCapacity), at: 28)
        verdict.put(UInt64(clamping: grant.slotSize), at: 32)
        verdict.put(UInt32(clamping: grant.slotCount), at: 40)
        verdict.put(UInt32(clamping: grant.heartbeat.intervalNanoseconds / 1_000_000), at: 44)
        verdict.put(UInt32(clamping: grant.heartbeat.timeoutNanoseconds / 1_000_000), at: 48)
        return verdict.bytes + grant.models
    }

    private static func check(status: UInt32, version: UInt32?, reason: String) throws(RemoteLinkError) {
        guard status != 0 else {
            guard version == RemoteProtocol.version else {
                throw .protocolViolation(
                    "daemon speaks remote protocol \(version ?? 0), this controller \(RemoteProtocol.version)")
            }
            return
        }
        guard let why = SessionRejection(rawValue: status) else { throw .protocolViolation("unknown status \(status)") }
        throw .rejected(why, reason: reason)
    }
}
