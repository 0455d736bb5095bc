// DemoTopology: the namespaces and veth pairs `tapbridge demo` stands on, and the configuration
// that bridges them. Host i lives in namespace tb-<x> (x = a, b, c) with 198.18.0.<i+1>/24 on
// its eth0; the veth's root-namespace end tb-<x>-veth carries a passthru macvtap tb-<x>-tap that
// the daemon creates and deletes like any configured port. Namespaces and veths are plumbing,
// made with iproute2; this file removes exactly what it made.
import Config
import Foundation

public final class DemoTopology {
    public struct Host: Sendable {
        public var namespace: String
        public var address: String
        public var veth: String
        public var macvtap: String
        public var mac: String
    }

    public let hosts: [Host]
    private var madeNamespaces: [String] = []
    private var madeLinks: [String] = []

    /// `count` hosts (2 or 3), named with `prefix` (default "tb").
    public init(count: Int, prefix: String = "tb") {
        let letters = ["a", "b", "c", "d"]
        hosts = (0..<count).map { i in
            let x = letters[i]
            return Host(namespace: "\(prefix)-\(x)", address: "198.18.0.\(i + 1)",
                        veth: "\(prefix)-\(x)-veth", macvtap: "\(prefix)-\(x)-tap",
                        mac: String(format: "02:74:62:00:00:%02x", i + 1))
        }
    }

    /// Creates namespaces, veth pairs and addresses. Refuses (creating nothing) if any name is
    /// already taken, so a second demo never tramples on a first one.
    public func build() throws {
        for h in hosts {
            if FileManager.default.fileExists(atPath: "/run/netns/\(h.namespace)") {
                throw DaemonError("network namespace '\(h.namespace)' already exists: is another demo running? (remove a stale one with `ip netns del \(h.namespace)`)")
            }
            for l in [h.veth, h.macvtap] where if_nametoindex(l) != 0 {
                throw DaemonError("interface '\(l)' already exists: is another demo running? (remove a stale one with `ip link del \(l)`)")
            }
        }
        do {
            for h in hosts {
                try command(["ip", "netns", "add", h.namespace])
                madeNamespaces.append(h.namespace)
                try command(["ip", "-n", h.namespace, "link", "set", "lo", "up"])
                try command(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.namespace])
                madeLinks.append(h.veth)
                try command(["ip", "-n", h.namespace, "link", "set", "eth0", "address", h.mac])
                try command(["ip", "-n", h.namespace, "addr", "add", h.address + "/24", "dev", "eth0"])
                try command(["ip", "-n", h.namespace, "link", "set", "eth0", "up"])
                try command(["ip", "link", "set", h.veth, "up"])
            }
        } catch {
            teardown()
            throw error
        }
    }

    /// The configuration bridging the hosts: one learning-switch bridge, one passthru macvtap per
    /// veth, created and deleted by the daemon.
    public func config(workers: Int?, offloads: Bool = true) -> DaemonConfig {
        var c = DaemonConfig(file: "demo")
        c.workers = workers
        let ports = hosts.enumerated().map { i, h -> PortConfig in
            var create = LinkCreation(parent: h.veth)
            create.mode = .passthru
            var m = MacvtapPortConfig(create: create)
            m.offloads = offloads
            return PortConfig(name: h.macvtap, kind: .macvtap(m), path: "bridges[0].ports[\(i)]")
        }
        let learningSwitch = HandlerConfig(name: "learning-switch", settings: LearningSwitchConfig(), path: "bridges[0].learning-switch")
        c.bridges = [BridgeConfig(name: "demo", pipeline: [learningSwitch],
                                  ports: ports, path: "bridges[0]")]
        return c
    }

    /// Removes what `build` made (namespaces take their veth ends and anything inside along).
    public func teardown() {
        for l in madeLinks.reversed() { _ = try? command(["ip", "link", "del", l], quiet: true) }
        for ns in madeNamespaces.reversed() {
            // Background servers (iperf3 -s -D) keep a namespace's processes alive: end them first.
            if let pids = try? command(["ip", "netns", "pids", ns], quiet: true) {
                for p in pids.split(separator: "\n") { if let pid = Int32(p) { kill(pid, SIGTERM) } }
            }
            _ = try? command(["ip", "netns", "del", ns], quiet: true)
        }
        madeLinks = []
        madeNamespaces = []
    }

    deinit { teardown() }
}

/// Runs `argv` (PATH lookup), returns its stdout; throws with its stderr on failure.
@discardableResult
func command(_ argv: [String], quiet: Bool = false, timeout: Double = 30) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let outData = ResultData(), errData = ResultData()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { outData.data = out.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { errData.data = err.fileHandleForReading.readDataToEndOfFile() }
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(5_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    group.wait()
    let stdout = String(decoding: outData.data, as: UTF8.self)
    guard p.terminationStatus == 0 else {
        let e = String(decoding: errData.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        throw DaemonError("`\(argv.joined(separator: " "))` failed: \(e.isEmpty ? "exit status \(p.terminationStatus)" : e)")
    }
    return stdout
}

private final class ResultData: @unchecked Sendable { var data = Data() }
