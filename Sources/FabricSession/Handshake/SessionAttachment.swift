import FabricQueue
import FabricSystem
import SystemPackage

/// A controller's side of a granted session: the regions mapped and
/// validated, and the two eventfds adopted, from the descriptors of a
/// ``SessionGrant``.
package struct SessionAttachment: Sendable {
    package let sessionID: UInt64
    package let submissionRegion: SharedRegion
    package let completionRegion: SharedRegion
    package let data: DataRegion
    /// The daemon's eventfd (the controller signals it) and the session's (it sleeps on it).
    package let daemonDoorbellFD: EventFD
    package let sessionDoorbellFD: EventFD

    /// Maps what `grant` holds; closes every descriptor of it that it does
    /// not keep (the regions keep their own; the eventfds are adopted).
    package init(_ grant: SessionGrant) throws(SessionError) {
        var byTag: [UInt8: FileDescriptor] = [:]
        defer { for (_, fd) in byTag { try? fd.close() } }
        for (tag, fd) in grant.descriptors {
            if let old = byTag.updateValue(fd, forKey: tag) { try? old.close() }
        }
        func take(_ tag: SessionDescriptorTag) throws(SessionError) -> FileDescriptor {
            guard let fd = byTag[tag.rawValue] else { throw .malformed("grant lacks \(tag)") }
            return fd
        }
        do {
            // Each attach validates the region's header before using it.
            submissionRegion = try SharedRegion.attach(fileDescriptor: try take(.submissionRing))
            completionRegion = try SharedRegion.attach(fileDescriptor: try take(.completionRing))
            data = try DataRegion.attach(fileDescriptor: try take(.dataRegion))
        } catch let error as SessionError {
            throw error
        } catch {
            throw .malformed("granted region: \(error)")
        }
        do {
            // Adopted as received (close-on-exec already): no duplicate, and
            // taken out of `byTag` so the cleanup above leaves them open.
            let daemonFD = try take(.daemonDoorbell), sessionFD = try take(.sessionDoorbell)
            daemonDoorbellFD = try EventFD(adopting: daemonFD)
            byTag[SessionDescriptorTag.daemonDoorbell.rawValue] = nil
            sessionDoorbellFD = try EventFD(adopting: sessionFD)
            byTag[SessionDescriptorTag.sessionDoorbell.rawValue] = nil
        } catch let error as SessionError {
            throw error
        } catch {
            throw .malformed("granted eventfd: \(error)")
        }
        sessionID = grant.sessionID
    }

    /// Parts made here (a remote session's local rings), not received.
    package init(
        sessionID: UInt64, submissionRegion: SharedRegion, completionRegion: SharedRegion, data: DataRegion,
        daemonDoorbellFD: EventFD, sessionDoorbellFD: EventFD
    ) {
        self.sessionID = sessionID
        self.submissionRegion = submissionRegion
        self.completionRegion = completionRegion
        self.data = data
        self.daemonDoorbellFD = daemonDoorbellFD
        self.sessionDoorbellFD = sessionDoorbellFD
    }
}

extension SessionAttachment {
    /// A session's submission-ring doorbell: "data available" signals the
    /// daemon's eventfd, "space available" the session's. The one place the
    /// wiring is written: daemons, controllers and the remote proxy and
    /// bridge all take it from here.
    package static func submissionDoorbell(daemon: EventFD, session: EventFD) -> Doorbell {
        .eventFD(dataAvailable: daemon, spaceAvailable: session)
    }

    /// A session's completion-ring doorbell: the reverse of ``submissionDoorbell(daemon:session:)``.
    package static func completionDoorbell(daemon: EventFD, session: EventFD) -> Doorbell {
        .eventFD(dataAvailable: session, spaceAvailable: daemon)
    }

    /// This session's submission-ring doorbell.
    package var submissionDoorbell: Doorbell {
        Self.submissionDoorbell(daemon: daemonDoorbellFD, session: sessionDoorbellFD)
    }

    /// This session's completion-ring doorbell.
    package var completionDoorbell: Doorbell {
        Self.completionDoorbell(daemon: daemonDoorbellFD, session: sessionDoorbellFD)
    }
}
