// PeerCredentials: who is on the other end of a Unix socket (SO_PEERCRED, SO_PEERGROUPS), and
// the control socket's admission rule: root, or a member of the configured group.
import Glibc

public struct PeerCredentials: Sendable, Equatable {
    public var pid: pid_t
    public var uid: uid_t
    public var gid: gid_t
    /// Supplementary groups at connect time (SO_PEERGROUPS, Linux 4.13+; empty if unavailable).
    public var groups: [gid_t]

    public init(pid: pid_t, uid: uid_t, gid: gid_t, groups: [gid_t] = []) {
        self.pid = pid; self.uid = uid; self.gid = gid; self.groups = groups
    }

    /// The credentials the kernel recorded when the peer connected (not spoofable by the peer).
    public static func of(socket fd: Int32) throws -> PeerCredentials {
        // struct ucred needs _GNU_SOURCE, which Glibc is not imported with: same layout here.
        var cred = (pid: pid_t(0), uid: uid_t(0), gid: gid_t(0))
        var len = socklen_t(MemoryLayout<(pid_t, uid_t, gid_t)>.size)
        let soPeerCred: Int32 = 17   // SO_PEERCRED
        guard getsockopt(fd, SOL_SOCKET, soPeerCred, &cred, &len) == 0 else {
            throw ControlSocketError("read SO_PEERCRED of", "control connection", errno: errno)
        }
        var groups = [gid_t](repeating: 0, count: 64)
        var glen = socklen_t(groups.count * MemoryLayout<gid_t>.size)
        let soPeerGroups: Int32 = 59   // SO_PEERGROUPS (not in every glibc's headers)
        if getsockopt(fd, SOL_SOCKET, soPeerGroups, &groups, &glen) == 0 {
            groups = Array(groups.prefix(Int(glen) / MemoryLayout<gid_t>.size))
        } else if errno == ERANGE, Int(glen) / MemoryLayout<gid_t>.size <= 65536 {
            groups = [gid_t](repeating: 0, count: Int(glen) / MemoryLayout<gid_t>.size)
            glen = socklen_t(groups.count * MemoryLayout<gid_t>.size)
            if getsockopt(fd, SOL_SOCKET, soPeerGroups, &groups, &glen) != 0 { groups = [] }
        } else {
            groups = []
        }
        return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid, groups: groups)
    }

    /// Root always; otherwise only a member (primary or supplementary) of `group`.
    public func isAllowed(group: gid_t?) -> Bool {
        if uid == 0 { return true }
        guard let group else { return false }
        return gid == group || groups.contains(group)
    }
}

/// A group given by name or number, resolved to its gid.
public func resolveGroup(_ nameOrNumber: String) -> gid_t? {
    if let n = UInt32(nameOrNumber) { return n }
    guard let g = getgrnam(nameOrNumber) else { return nil }
    return g.pointee.gr_gid
}

/// A socket operation that failed: what, on what, errno.
public struct ControlSocketError: Error, Equatable, CustomStringConvertible {
    public var operation: String
    public var subject: String
    public var errno: Int32
    public var detail: String?
    public init(_ operation: String, _ subject: String, errno: Int32, detail: String? = nil) {
        self.operation = operation; self.subject = subject; self.errno = errno; self.detail = detail
    }
    public var description: String { "cannot \(operation) \(subject): \(detail ?? String(cString: strerror(errno)))" }
}
