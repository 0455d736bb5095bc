// NetworkNamespace: naming a network namespace (as `ip netns` does, by pid, or by an open fd)
// and running code inside it. setns() changes only the calling thread, so that code runs on a
// short-lived thread of its own; the rest of the process never changes namespace.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif
import Foundation
import CTapbridgeShim

public enum NetworkNamespace: Equatable, Sendable, CustomStringConvertible {
    /// A namespace pinned by `ip netns add NAME` at /run/netns/NAME.
    case named(String)
    /// The namespace of a process.
    case pid(Int32)
    /// An open namespace file descriptor (not closed by us).
    case fd(Int32)

    public var description: String {
        switch self {
        case .named(let n): return n
        case .pid(let p): return "pid \(p)"
        case .fd(let f): return "fd \(f)"
        }
    }

    /// Opens the namespace file (close-on-exec), owned by the caller.
    public func open() throws -> OwnedDescriptor {
        let path: String
        switch self {
        case .named(let n):
            guard !n.isEmpty, !n.contains("/") else {
                throw NetlinkError.invalid(.enterNamespace, interface: "", "invalid namespace name '\(n)'")
            }
            path = "/run/netns/\(n)"
        case .pid(let p): path = "/proc/\(p)/ns/net"
        case .fd(let f):
            do { return try Syscall.duplicate(f) } catch {
                throw NetlinkError(.enterNamespace, interface: "", errno: error.errno, detail: "fd \(f)")
            }
        }
        do { return try Syscall.open(path, O_RDONLY | O_CLOEXEC) } catch {
            let e = error.errno
            throw NetlinkError(.enterNamespace, interface: "", errno: e,
                               detail: e == ENOENT ? "network namespace '\(self)' does not exist (\(path))" : path)
        }
    }

    /// Runs `body` on a fresh thread that has entered this namespace, and returns its result.
    public func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let namespaceFile = try open()   // closed when run returns, after the thread is done with it
        let fd = namespaceFile.rawValue
        let outcome = ThreadOutcome<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            if tb_setns_net(fd) != 0 {
                outcome.result = .failure(NetlinkError(.enterNamespace, interface: "", errno: errno, detail: "\(self)"))
            } else {
                outcome.result = Result { try body() }
            }
            done.signal()
        }
        thread.start()
        done.wait()
        return try outcome.result!.get()
    }
}

/// A result handed from a helper thread back to its waiting caller; the semaphore the caller
/// waits on orders the two accesses.
final class ThreadOutcome<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
