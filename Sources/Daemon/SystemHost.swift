// SystemHost: HostInspector answered by the running kernel over rtnetlink (the Netlink module,
// in the link's namespace). Read-only. Also the namespace helper PortOpener uses.
import Foundation
import Glibc
import Netlink

public struct SystemHost: HostInspector {
    public init() {}

    public func namespaceExists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "/run/netns/\(name)")
    }

    public func link(named name: String, netns: String?) -> HostLink? {
        if let manager = try? LinkManager(namespace: netns.map { NetworkNamespace.named($0) }) {
            do {
                guard let l = try manager.link(named: name) else { return nil }
                return HostLink(name: l.name, ifindex: l.index, kind: l.kind ?? "")
            } catch {}
        }
        // Netlink unavailable: sysfs.
        if let netns {
            return (try? inNamespace(netns, sysfs: true) { () -> HostLink? in
                let index = if_nametoindex(name)
                return index == 0 ? nil : HostLink(name: name, ifindex: Int32(index), kind: Self.kind(of: name))
            }) ?? nil
        }
        let index = if_nametoindex(name)
        guard index != 0 else { return nil }
        return HostLink(name: name, ifindex: Int32(index), kind: Self.kind(of: name))
    }

    public func upperLinks(of parent: String) -> [String] {
        if let links = try? LinkManager().links() {
            return links.filter { $0.isMacvlanFamily && $0.parentName == parent }.map(\.name).sorted()
        }
        let dir = "/sys/class/net/\(parent)"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return entries.filter { $0.hasPrefix("upper_") }.map { String($0.dropFirst(6)) }
            .filter { ["macvtap", "macvlan"].contains(Self.kind(of: $0)) }.sorted()
    }

    /// The rtnetlink kind as far as sysfs tells it (root namespace only).
    static func kind(of name: String) -> String? {
        let fm = FileManager.default
        let dir = "/sys/class/net/\(name)"
        if fm.fileExists(atPath: dir + "/macvtap") { return "macvtap" }
        let uevent = (try? String(contentsOfFile: dir + "/uevent", encoding: .utf8)) ?? ""
        for line in uevent.split(separator: "\n") where line.hasPrefix("DEVTYPE=") {
            return String(line.dropFirst(8))
        }
        if let driver = try? fm.destinationOfSymbolicLink(atPath: dir + "/device/driver") {
            return (driver as NSString).lastPathComponent
        }
        return fm.fileExists(atPath: dir) ? "" : nil   // exists, kind not told by sysfs
    }
}

/// Runs `body` on a fresh thread switched into network namespace `name` (/run/netns/NAME), so
/// the caller's thread never changes namespace. With `sysfs`, the thread also gets a private
/// mount namespace with /sys remounted, because sysfs shows the network namespace it was
/// mounted in, not the caller's (what `ip netns exec` does too): /sys/class/net then lists the
/// namespace's links and their macvtap device numbers.
func inNamespace<T>(_ name: String, sysfs: Bool = false, _ body: @escaping () throws -> T) throws -> T {
    let fd = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw NamespaceError(namespace: name, operation: "open", errno: errno) }
    defer { close(fd) }
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        defer { done.signal() }
        guard enterNamespace(fd) == 0 else {
            box.result = .failure(NamespaceError(namespace: name, operation: "setns", errno: errno)); return
        }
        if sysfs {
            guard unshareMounts() == 0 else {
                box.result = .failure(NamespaceError(namespace: name, operation: "unshare(CLONE_NEWNS)", errno: errno)); return
            }
            // Keep our remount private, then show this namespace's sysfs.
            guard mount(nil, "/", nil, UInt(MS_REC | MS_SLAVE), nil) == 0,
                  umount2("/sys", Int32(MNT_DETACH)) == 0 || errno == EINVAL,
                  mount("sysfs", "/sys", "sysfs", 0, nil) == 0 else {
                box.result = .failure(NamespaceError(namespace: name, operation: "mount sysfs", errno: errno)); return
            }
        }
        box.result = Result { try body() }
    }
    thread.start()
    done.wait()
    return try box.result!.get()
}

public struct NamespaceError: Error, CustomStringConvertible {
    public var namespace: String
    public var operation: String
    public var errno: Int32
    public var description: String {
        "cannot enter network namespace '\(namespace)': \(operation): \(String(cString: strerror(errno)))"
    }
}

/// setns(fd, CLONE_NEWNET). Glibc's module map hides setns and unshare (they need
/// _GNU_SOURCE), so they are looked up.
private func enterNamespace(_ fd: Int32) -> Int32 {
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { errno = ENOSYS; return -1 }
    let cloneNewNet: Int32 = 0x4000_0000
    return unsafeBitCast(sym, to: SetNS.self)(fd, cloneNewNet)
}

/// unshare(CLONE_NEWNS) for the calling thread.
private func unshareMounts() -> Int32 {
    typealias Unshare = @convention(c) (Int32) -> Int32
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "unshare") else { errno = ENOSYS; return -1 }
    let cloneNewNS: Int32 = 0x0002_0000
    return unsafeBitCast(sym, to: Unshare.self)(cloneNewNS)
}

/// Carries a result back from the namespace thread (written before the semaphore is signalled).
private final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }
