// Topology: network namespaces, veth pairs and links a test creates, removed when the test ends
// whether it passed or not. Names carry a random tag so tests can run in parallel, and the
// prefix "tbt" so tools/test can sweep anything a crashed test left behind.
import Foundation

public final class Topology: @unchecked Sendable {
    /// "tbt" + 4 hex digits: unique per topology.
    public let tag: String
    private var namespaces: [String] = []
    private var rootLinks: [String] = []
    private var cleanups: [() -> Void] = []
    private let lock = NSLock()

    public init() {
        tag = "tbt" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    /// An interface name (max 15 chars) unique to this topology: tag + `short` (max 8 chars).
    public func ifname(_ short: String) -> String {
        precondition(short.count <= 8, "interface short name too long: \(short)")
        return tag + short
    }

    /// Creates namespace "<tag>-<short>" with loopback up and returns its name.
    @discardableResult
    public func addNamespace(_ short: String) throws -> String {
        let name = "\(tag)-\(short)"
        try run(["ip", "netns", "add", name])
        lock.withLock { namespaces.append(name) }
        try run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name
    }

    /// Remembers a root-namespace link to delete at clean-up (one created by the code under test).
    public func track(link: String) { lock.withLock { rootLinks.append(link) } }

    /// Runs `body` at clean-up, before namespaces are deleted (kill a daemon, remove a file...).
    public func onCleanup(_ body: @escaping () -> Void) { lock.withLock { cleanups.append(body) } }

    /// Creates a veth pair in the root namespace; either end may then be moved with `move`.
    public func addVeth(_ a: String, _ b: String) throws {
        try run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
        track(link: a)
    }

    /// Moves link `link` into namespace `ns`, optionally giving it an IPv4 address and bringing it up.
    public func move(_ link: String, to ns: String, address: String? = nil, up: Bool = true) throws {
        try run(["ip", "link", "set", link, "netns", ns])
        if let address { try run(["ip", "-n", ns, "addr", "add", address, "dev", link]) }
        if up { try run(["ip", "-n", ns, "link", "set", link, "up"]) }
    }

    /// Runs a command inside namespace `ns`.
    @discardableResult
    public func exec(_ ns: String, _ argv: [String], check: Bool = true, timeout: Double = 60) throws -> CommandResult {
        try run(["ip", "netns", "exec", ns] + argv, check: check, timeout: timeout)
    }

    /// Removes everything this topology created. Safe to call twice.
    public func cleanup() {
        let (c, l, n) = lock.withLock { () -> ([() -> Void], [String], [String]) in
            defer { cleanups = []; rootLinks = []; namespaces = [] }
            return (cleanups, rootLinks, namespaces)
        }
        for body in c.reversed() { body() }
        for link in l.reversed() { _ = try? run(["ip", "link", "del", link], check: false) }
        for ns in n.reversed() {
            // Kill anything still running inside before deleting, so the namespace really goes.
            _ = try? run(["ip", "netns", "pids", ns], check: false).stdout
                .split(separator: "\n").forEach { if let pid = Int32($0) { kill(pid, SIGKILL) } }
            _ = try? run(["ip", "netns", "del", ns], check: false)
        }
    }

    deinit { cleanup() }
}

/// Runs `body` with a fresh topology and always cleans it up afterwards.
public func withTopology<T>(_ body: (Topology) async throws -> T) async throws -> T {
    let t = Topology()
    do {
        let r = try await body(t)
        t.cleanup()
        return r
    } catch {
        t.cleanup()
        throw error
    }
}

/// Synchronous variant.
public func withTopology<T>(_ body: (Topology) throws -> T) throws -> T {
    let t = Topology()
    defer { t.cleanup() }
    return try body(t)
}
