// SystemdNotifier: the sd_notify protocol, written directly (no libsystemd): one datagram of
// newline-separated KEY=VALUE fields to the Unix socket named by $NOTIFY_SOCKET (a path, or
// an abstract name written "@name"). Without $NOTIFY_SOCKET every call does nothing, so the
// daemon behaves the same under systemd, in a terminal and in tests. Also owns the watchdog
// interval: half of $WATCHDOG_USEC, as sd_watchdog_enabled() recommends.
import Foundation
import Frames
import Glibc
import SystemCalls

public final class SystemdNotifier {
    private let socket: OwnedDescriptor
    private var fd: Int32 { socket.rawValue }
    private var address: sockaddr_un
    private let addressLength: socklen_t
    /// The socket as given ("/run/systemd/notify", "@abstract"), for logs.
    public let socketName: String
    /// How often to send WATCHDOG=1 (half of $WATCHDOG_USEC); nil: the watchdog is off.
    public let watchdogInterval: Double?

    /// nil when $NOTIFY_SOCKET is not set (not started by systemd as Type=notify) or unusable.
    public init?(environment: [String: String]) throws {
        guard let name = environment["NOTIFY_SOCKET"], !name.isEmpty else { return nil }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        var path = Array(name.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }   // abstract namespace: leading NUL
        else if path.first != UInt8(ascii: "/") {
            throw DaemonError("NOTIFY_SOCKET '\(name)': neither an absolute path nor an abstract '@' name")
        }
        let capacity = MemoryLayout.size(ofValue: sa.sun_path)
        guard path.count < capacity else { throw DaemonError("NOTIFY_SOCKET '\(name)': path too long") }
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        // Abstract names are exactly `path.count` bytes long (no terminating NUL counted).
        let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        addressLength = socklen_t(offset + path.count + (path.first == 0 ? 0 : 1))
        address = sa
        socketName = name
        do { socket = try Syscall.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)) } catch {
            throw DaemonError("NOTIFY_SOCKET '\(name)': socket: \(error.reason)")
        }
        // Only for us: $WATCHDOG_PID, when set, names the process the manager watches.
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            watchdogInterval = Double(usec) / 2_000_000
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends one notification (`["READY=1", "STATUS=..."]`). Errors are returned, not thrown:
    /// a manager that went away must not stop the daemon.
    @discardableResult
    public func send(_ fields: [String]) -> Int32 {
        // A newline inside a value would start a new field: flatten it.
        let text = fields.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n")
        let bytes = Array(text.utf8)
        let fd = self.fd, length = addressLength
        let sent = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Result { () throws(SyscallError) in
                    try Syscall.retryingInterrupts("sendto") { sendto(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL), sa, length) }
                }
            }
        }
        if case .failure(let e) = sent { return e.errno }
        return 0
    }

    public func ready(status: String) { send(["READY=1", "STATUS=\(status)"]) }
    public func reloading() {
        // systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 (Type=notify-reload); older ones ignore it.
        send(["RELOADING=1", "MONOTONIC_USEC=\(MonotonicClock.microseconds())",
              "STATUS=reloading configuration"])
    }
    public func stopping(status: String) { send(["STOPPING=1", "STATUS=\(status)"]) }
    public func status(_ text: String) { send(["STATUS=\(text)"]) }
    public func watchdog() { send(["WATCHDOG=1"]) }
}
