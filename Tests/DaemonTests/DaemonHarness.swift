// DaemonHarness: runs the built `tapbridge run` binary against a config written to a temp file,
// inside a TestSupport topology; the daemon is always killed and its files removed at clean-up.
import Foundation
import Testing
import TestSupport
@testable import Daemon
import Netlink

/// A `tapbridge run` process under test.
final class DaemonProcess: @unchecked Sendable {
    let process = Process()
    let configPath: String
    let logPath: String
    /// The crash-recovery state directory: a private one per process unless `arguments` name one
    /// (daemons running in parallel must not share /run/tapbridge).
    let stateDir: String
    /// The daemon's control socket (each test daemon has its own, never the default path).
    let controlPath: String
    private var exitStatus: Int32?

    /// Writes `config` and starts the daemon; waits until its log says "running" (or it exits).
    /// `wrapper` runs the daemon under another command (`setpriv ...`); `environment` is added.
    /// `executable`: another build of the command (a custom daemon); default: this build's `tapbridge`.
    init(_ t: Topology, config: String, arguments: [String] = [], waitReady: Bool = true,
         wrapper: [String] = [], environment: [String: String] = [:], executable: String? = nil) throws {
        let dir = FileManager.default.temporaryDirectory.path
        let base = "\(dir)/\(t.tag)-\(UInt32.random(in: 0...UInt32.max))"
        configPath = base + ".toml"
        logPath = base + ".log"
        controlPath = base + ".sock"
        var args = arguments
        if !args.contains("--control") { args += ["--control", controlPath] }
        if let i = args.firstIndex(of: "--state-dir"), i + 1 < args.count {
            stateDir = args[i + 1]
        } else {
            stateDir = base + ".state"
            args += ["--state-dir", stateDir]
        }
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let argv = wrapper + [executable ?? tapbridgeExecutable(), "run", "--config", configPath] + args
        process.executableURL = URL(fileURLWithPath: wrapper.isEmpty ? argv[0] : "/usr/bin/env")
        process.arguments = wrapper.isEmpty ? Array(argv.dropFirst()) : argv
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let p = process, paths = [configPath, logPath, controlPath] + (arguments.contains("--state-dir") ? [] : [stateDir])
        t.onCleanup {
            if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
            for f in paths { try? FileManager.default.removeItem(atPath: f) }
        }
        if waitReady { try waitFor("info running") }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log contains `text`; throws with the log if the daemon exits or time runs out.
    func waitFor(_ text: String, timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.contains(text) { return }
            if !process.isRunning {
                throw HarnessError("daemon exited (\(process.terminationStatus)) before '\(text)':\n\(log)")
            }
            usleep(50_000)
        }
        throw HarnessError("timed out waiting for '\(text)' in the daemon log:\n\(log)")
    }

    /// Sends `signal` and waits for the exit status (SIGKILL after `timeout`).
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Double = 20) -> Int32 {
        if let exitStatus { return exitStatus }
        if process.isRunning { kill(process.processIdentifier, signal) }
        return waitExit(timeout: timeout)
    }

    func waitExit(timeout: Double = 20) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        exitStatus = process.terminationStatus
        return process.terminationStatus
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Names of links in the root namespace (or `netns`), from `ip -j link`.
func linkNames(netns: String? = nil) throws -> Set<String> {
    let argv = ["ip"] + (netns.map { ["-n", $0] } ?? []) + ["-j", "link", "show"]
    let out = try run(argv).stdout
    let arr = try json(out) as? [[String: Any]] ?? []
    return Set(arr.compactMap { $0["ifname"] as? String })
}

/// `ip -d -j link show NAME` as a dictionary, nil if it does not exist.
func linkDetails(_ name: String, netns: String? = nil) -> [String: Any]? {
    let argv = ["ip"] + (netns.map { ["-n", $0] } ?? []) + ["-d", "-j", "link", "show", name]
    guard let r = try? run(argv, check: false), r.succeeded,
          let arr = try? json(r.stdout) as? [[String: Any]] else { return nil }
    return arr.first
}

/// Host namespaces behind veths whose root ends (`<tag>v<i>`) are parents for macvtaps
/// (`<tag>m<i>`); host i has `addresses[i]` (default 198.18.0.<i+1>) /24 on eth0 and IPv6 off,
/// so the only frames are the ones a test sends.
struct Hosts {
    var namespaces: [String] = []
    var veths: [String] = []
    var macvtaps: [String] = []
    var addresses: [String] = []
    var macs: [String] = []

    init(_ t: Topology, count: Int, ips: [String]? = nil) throws {
        for i in 0..<count {
            let ns = try t.addNamespace("h\(i)")
            let veth = t.ifname("v\(i)")
            try run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            t.track(link: veth)
            // (/proc/sys/net is the opener's namespace; procps' sysctl may not be installed)
            try t.exec(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
            let addr = ips?[i] ?? "198.18.0.\(i + 1)"
            let mac = String(format: "02:00:00:00:00:%02x", i + 1)
            try run(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
            if !addr.isEmpty { try run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0"]) }
            try run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            try run(["ip", "link", "set", veth, "up"])
            namespaces.append(ns); veths.append(veth); macvtaps.append(t.ifname("m\(i)")); addresses.append(addr)
            macs.append(mac)
        }
    }

    /// Pings `to` from host `from`; true if all `count` replies came back.
    func ping(_ from: Int, _ to: String, count: Int = 3) -> Bool {
        (try? run(["ip", "netns", "exec", namespaces[from], "ping", "-c", "\(count)", "-i", "0.1", "-W", "1", "-q", to],
                  check: false, timeout: 20).succeeded) ?? false
    }

    /// `[[bridges.ports]]` tables creating a passthru macvtap on each veth.
    func portTables(offloads: Bool = true, extra: [Int: String] = [:]) -> String {
        (0..<veths.count).map { i in
            """
            [[bridges.ports]]
            name = "\(macvtaps[i])"
            parent = "\(veths[i])"
            mode = "passthru"
            offloads = \(offloads)
            \(extra[i] ?? "")

            """
        }.joined()
    }
}

/// Counters the daemon logged at exit ("final counters port=X key=value..."), by port name.
func finalCounters(_ log: String) -> [String: [String: String]] {
    var out: [String: [String: String]] = [:]
    for line in log.split(separator: "\n") where line.contains(" final counters ") {
        var fields: [String: String] = [:]
        for token in line.split(separator: " ") {
            let kv = token.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        if let p = fields["port"] { out[p] = fields } else if let h = fields["handler"] { out["handler:" + h] = fields }
    }
    return out
}

extension Dictionary where Key == String, Value == String {
    func int(_ key: String) -> Int { Int(self[key] ?? "") ?? -1 }
}

/// A bounded iperf3 TCP run (`seconds`) from host `from` to host `server`. Returns (sent,
/// received) bytes from the client's JSON.
func iperf(_ h: Hosts, from: Int, to server: Int, seconds: Int = 3, timeout: Double = 40) throws -> (Int, Int) {
    let srv = try BackgroundCommand(["ip", "netns", "exec", h.namespaces[server], "iperf3", "-s", "-1", "-B", h.addresses[server]])
    defer { srv.stop() }
    var last: CommandResult?
    for _ in 0..<20 {
        usleep(100_000)
        let r = try run(["ip", "netns", "exec", h.namespaces[from], "iperf3", "-c", h.addresses[server], "-t", "\(seconds)", "-J"],
                        check: false, timeout: timeout)
        last = r
        if r.succeeded {
            let end = (try json(r.stdout) as? [String: Any])?["end"] as? [String: Any]
            let s = (end?["sum_sent"] as? [String: Any])?["bytes"] as? Int ?? 0
            let rc = (end?["sum_received"] as? [String: Any])?["bytes"] as? Int ?? 0
            return (s, rc)
        }
        if !r.stdout.contains("Connection refused") && !r.stderr.contains("Connection refused") { break }
    }
    throw HarnessError("iperf3 failed: \(last?.stdout ?? "") \(last?.stderr ?? "")")
}

/// Sends exactly `bytes` over one TCP connection from namespace `client` to `address`:5301 in
/// namespace `server` and returns what the receiver counted until end of file: an exact
/// delivery oracle (iperf3's own totals stop at its end-of-test message, with retransmitted
/// bytes possibly still in flight).
func tcpTransfer(client: String, server: String, address: String, bytes: Int) throws -> Int {
    let ready = DispatchSemaphore(value: 0)
    let result = TransferResult()
    let srv = Thread {
        do {
            result.received = try NetworkNamespace.named(server).run { () -> Int in
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                var tv = timeval(tv_sec: 30, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var sa = try sockaddrIn(address, port: 5301)
                guard withUnsafePointer(to: &sa, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0, listen(fd, 1) == 0 else {
                    ready.signal(); throw HarnessError("bind/listen: errno \(errno)")
                }
                ready.signal()
                let c = accept(fd, nil, nil)
                guard c >= 0 else { throw HarnessError("accept: errno \(errno)") }
                defer { close(c) }
                setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var buf = [UInt8](repeating: 0, count: 1 << 16)
                var total = 0
                while true {
                    let n = read(c, &buf, buf.count)
                    if n <= 0 { break }
                    total += n
                }
                return total
            }
        } catch { result.error = "\(error)" }
        result.done.signal()
    }
    srv.start()
    ready.wait()
    try NetworkNamespace.named(client).run {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = try sockaddrIn(address, port: 5301)
        guard withUnsafePointer(to: &sa, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else {
            throw HarnessError("connect: errno \(errno)")
        }
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 16)
        var left = bytes
        while left > 0 {
            let n = write(fd, chunk, min(left, chunk.count))
            if n <= 0 { throw HarnessError("write: errno \(errno)") }
            left -= n
        }
        shutdown(fd, Int32(SHUT_WR))
    }
    guard result.done.wait(timeout: .now() + 60) == .success else { throw HarnessError("receiver timed out") }
    if let e = result.error { throw HarnessError(e) }
    return result.received
}

private final class TransferResult: @unchecked Sendable {
    var received = 0
    var error: String?
    let done = DispatchSemaphore(value: 0)
}

private func sockaddrIn(_ address: String, port: UInt16) throws -> sockaddr_in {
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    guard inet_pton(AF_INET, address, &sa.sin_addr) == 1 else { throw HarnessError("bad address \(address)") }
    return sa
}
