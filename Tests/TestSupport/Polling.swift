// Polling: waiting on an event the kernel reports asynchronously (a link that goes once the last
// descriptor of it is released, a counter that moves) with a generous deadline, instead of a
// fixed sleep or a check made once. CI runs the whole suite on a loaded 2-core machine, and
// tools/sanitize again under ASan/TSan (2-10x slower): what takes milliseconds here can take
// seconds there.
import Foundation
import Glibc

/// Polls `condition` every 10 ms until it holds (true) or `timeout` seconds pass (false; the
/// condition is checked once more at the deadline).
public func pollUntil(_ timeout: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// Whether interface `name` exists in the caller's network namespace.
public func linkExists(_ name: String) -> Bool { access("/sys/class/net/\(name)", F_OK) == 0 }

/// Waits (up to `timeout` s) for interface `name` to be gone from the caller's namespace.
/// A tap is deleted when the last file of it is released, and that is not always the close()
/// that drops our descriptor: a child another thread is spawning (posix_spawn) holds a copy of
/// every descriptor until it execs, and io_uring releases the files of a closed ring or a
/// detached slot asynchronously. So "deleted at release" is observed by waiting, not at once.
public func waitLinkGone(_ name: String, timeout: Double = 30) -> Bool {
    pollUntil(timeout) { !linkExists(name) }
}

/// Waits (up to `timeout` s) for the Unix socket bound at `path` to be released by the kernel:
/// a probe's connect is refused (ECONNREFUSED; the file stays, as QEMU leaves it). Like a
/// tap, a socket lives until the last file of it is released, and a child being spawned by
/// another test holds a copy of every descriptor until it execs: a test that closes a peer's
/// socket and then expects its absence (port-down, ECONNREFUSED) waits for this first.
public func waitUnixSocketGone(_ path: String, type: Int32 = Int32(SOCK_DGRAM.rawValue), timeout: Double = 30) -> Bool {
    pollUntil(timeout) {
        let probe = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: sa.sun_path) else { return false }
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: bytes) }
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return r < 0 && errno == ECONNREFUSED
    }
}
