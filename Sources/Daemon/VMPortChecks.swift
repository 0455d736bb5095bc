// VMPortChecks: host facts a `vm` port depends on — the socket file's directory and what is at
// the path now, and owner/group names — used by ConfigValidator before start and by PortOpener
// when the socket is created. Read-only.
import Config
import Foundation
import UnixSocketFiles
import VMBackend

enum VMPortChecks {
    /// Why `path` cannot serve as a VM socket, or nil. `created`: tapbridge creates the file
    /// there (stream-server, dgram's own path), so something that is not a socket must not be in
    /// the way (a stale socket is replaced safely at start).
    static func socketPathProblem(_ path: String, created: Bool) -> String? {
        guard path.hasPrefix("/") else { return "must be an absolute path, not '\(path)'" }
        if path.utf8.count > 107 { return "'\(path)' is longer than a Unix socket path may be (107 bytes)" }
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue {
            return "directory '\(dir)' does not exist"
        }
        guard created else { return nil }
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFSOCK {
            return "'\(path)' exists and is not a socket (tapbridge replaces only stale sockets)"
        }
        return nil
    }

    /// A user name or numeric id.
    static func userID(_ s: String) -> uid_t? {
        if let n = UInt32(s) { return n }
        guard let pw = getpwnam(s) else { return nil }
        return pw.pointee.pw_uid
    }

    static func groupID(_ s: String) -> gid_t? {
        if let n = UInt32(s) { return n }
        guard let gr = getgrnam(s) else { return nil }
        return gr.pointee.gr_gid
    }

    /// Owner, group and mode for the socket file (names resolved now).
    static func access(_ vm: VMPortConfig) throws -> SocketFileAccess {
        var a = SocketFileAccess(mode: mode_t(vm.socketMode))
        if let o = vm.owner {
            guard let u = userID(o) else { throw DaemonError("no user '\(o)'") }
            a.owner = u
        }
        if let g = vm.group {
            guard let n = groupID(g) else { throw DaemonError("no group '\(g)'") }
            a.group = n
        }
        return a
    }
}
