import FabricSystem
import Glibc

/// Who is at the other end of a Unix socket, as the kernel recorded it when
/// the peer connected (`SO_PEERCRED`): not something the peer can claim.
public struct PeerCredentials: Equatable, Sendable, CustomStringConvertible {
    /// The peer's process id.
    public var pid: Int32
    /// The peer's effective user id.
    public var uid: UInt32
    /// The peer's effective group id.
    public var gid: UInt32

    /// Credentials with the given ids.
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }
}

/// Which peers a daemon serves: an allow-list of user ids and group ids.
/// A peer is admitted when its uid or its gid is listed.
public struct PeerPolicy: Equatable, Sendable {
    /// User ids admitted.
    public var allowedUIDs: Set<UInt32>
    /// Group ids admitted.
    public var allowedGIDs: Set<UInt32>

    /// A policy admitting exactly these ids.
    public init(allowedUIDs: Set<UInt32> = [], allowedGIDs: Set<UInt32> = []) {
        self.allowedUIDs = allowedUIDs
        self.allowedGIDs = allowedGIDs
    }

    /// The default: only processes running as the same user as this one.
    public static var sameUser: PeerPolicy { PeerPolicy(allowedUIDs: [UInt32(geteuid())]) }

    /// Whether `peer` may open a session.
    public func admits(_ peer: PeerCredentials) -> Bool {
        allowedUIDs.contains(peer.uid) || allowedGIDs.contains(peer.gid)
    }
}
