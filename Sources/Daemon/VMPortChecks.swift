// VMPortChecks: host facts a `vm` port depends on — the socket file's directory and what is at
// the path now, and owner/group names — used by ConfigValidator before start and by PortOpener
// when the socket is created. Read-only.
import Config
import Foundation
import Glibc
import UnixSocketFiles
import VMBackend

enum VMPortChecks {
    /// Why `path` cannot serve as a socket tapbridge binds or reaches, or nil. The same checks
    /// serve `config check`, `run --check` and `run` (before anything is created), for VM
    /// sockets and the control socket. `created`: tapbridge creates the file there
    /// (stream-server, dgram's own path, the control socket), so its directory must be writable
    /// (a read-only /run under systemd's ProtectSystem=strict is caught here) and nothing but a
    /// stale socket may be in the way — a symbolic link is never followed nor replaced.
    /// `directoryCreated`: the directory itself is made at start if missing (the control
    /// socket's /run/tapbridge), so its parent must be there and writable.
    static func socketPathProblem(_ path: String, created: Bool, directoryCreated: Bool = false) -> String? {
        guard path.hasPrefix("/") else { return "must be an absolute path, not '\(path)'" }
        if path.utf8.count > 107 { return "'\(path)' is longer than a Unix socket path may be (107 bytes)" }
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
            let parent = (dir as NSString).deletingLastPathComponent
            guard created, directoryCreated, FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
                return "directory '\(dir)' does not exist"
            }
            if Glibc.access(parent, W_OK) != 0 {
                return "directory '\(dir)' does not exist and cannot be created: '\(parent)' is not writable (\(String(cString: strerror(errno))))"
            }
            return nil
        }
        guard isDir.boolValue else { return "'\(dir)' is not a directory" }
        guard created else { return nil }
        if Glibc.access(dir, W_OK) != 0 {
            return "directory '\(dir)' is not writable (\(String(cString: strerror(errno)))): the socket cannot be created there"
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFSOCK: break
            case S_IFLNK: return "'\(path)' is a symbolic link (tapbridge never follows or replaces one: remove it)"
            default: return "'\(path)' exists and is not a socket (tapbridge replaces only stale sockets)"
            }
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
