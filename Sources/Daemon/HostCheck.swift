// HostCheck: `tapbridge run --check`: validates a configuration and this host for it and
// returns a readable report, one line per check (ok / warn / FAIL and why). It changes
// nothing: the probes it makes are a throw-away io_uring with a small buffer ring and a
// device node in a private temp directory, both removed before it returns.
import Config
import Foundation
import Glibc
import Netlink
import SystemCalls
import Tap
import Ring
import CTapbridgeShim

public struct CheckLine: Sendable, Equatable, CustomStringConvertible {
    public enum Status: String, Sendable { case ok, warn, fail = "FAIL" }
    public var status: Status
    public var what: String
    public var detail: String
    public var description: String {
        "\(status.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0))  \(what): \(detail)"
    }
}

public struct HostCheckReport: Sendable {
    public var lines: [CheckLine] = []
    public var passed: Bool { !lines.contains { $0.status == .fail } }
    public var text: String { lines.map(\.description).joined(separator: "\n") }
    mutating func add(_ s: CheckLine.Status, _ what: String, _ detail: String) {
        lines.append(CheckLine(status: s, what: what, detail: detail))
    }
}

public enum HostCheck {
    /// Linux capability numbers (linux/capability.h).
    static let capNetAdmin = 12, capSysAdmin = 21, capMknod = 27

    /// Checks `config` (parsed as far as it could be, with the file's own problems in
    /// `parseIssues`; nil with the reason in `parseError` when it could not be read) and the
    /// host: the file's problems and the host's are reported in one pass.
    public static func run(file: String, config: DaemonConfig?, parseError: Error?, parseIssues: [ConfigIssue] = []) -> HostCheckReport {
        var r = HostCheckReport()
        if let config {
            let ports = config.allPorts
            if parseIssues.isEmpty {
                r.add(.ok, "config \(file)", "\(config.bridges.count) bridge(s), \(ports.count) port(s), "
                      + "\(ports.filter { $0.port.create != nil || $0.port.tap != nil || $0.port.host != nil || $0.port.vxlan != nil }.count) link(s) to create")
            }
            for i in parseIssues { r.add(.fail, "config", i.description) }
            // Links a running daemon (or a dead one) created count as its own, not as conflicts.
            let host = RecoveringHost(stateDirectory: config.stateDirectory, includeLive: true)
            let hostIssues = ConfigProblems.all(config, parseIssues: parseIssues, host: host).dropFirst(parseIssues.count)
            if hostIssues.isEmpty {
                r.add(.ok, "config against host", "namespaces, parents and links as declared")
            }
            for i in hostIssues { r.add(.fail, "config against host", i.description) }
            parents(config, &r)
            stateDirectory(config, host: host, &r)
            if let m = config.metrics {
                do {
                    let a = try MetricsAddress(parsing: m, allowRemote: config.metricsAllowRemote)
                    r.add(.ok, "metrics endpoint", "http://\(a)/metrics\(a.isLoopback ? "" : " (not loopback: reachable from the network)")")
                } catch { r.add(.fail, "metrics endpoint", "\(error)") }
            }
        } else if let e = parseError as? ConfigError {
            for i in e.issues { r.add(.fail, "config", i.description) }
        } else {
            r.add(.fail, "config", "\(parseError.map { "\($0)" } ?? "not read")")
        }
        kernelModule("macvlan", &r)
        kernelModule("macvtap", &r)
        if config?.allPorts.contains(where: { $0.port.tap != nil || $0.port.host != nil }) ?? false { tunDevice(&r) }
        ioUring(&r)
        capabilities(needsNamespaces: config?.allPorts.contains { $0.port.netns != nil } ?? false, &r)
        deviceNode(&r)
        return r
    }

    /// Tap and host ports need /dev/net/tun (read-only probe: opened and closed, no TUNSETIFF).
    static func tunDevice(_ r: inout HostCheckReport) {
        let fd = open(TunDevice.controlPath, O_RDWR | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            r.add(.ok, "tun device", "\(TunDevice.controlPath) opens (tap and host ports)")
        } else {
            r.add(.fail, "tun device", "cannot open \(TunDevice.controlPath): \(String(cString: strerror(errno))); tap and host ports cannot be made")
        }
    }

    static func parents(_ config: DaemonConfig, _ r: inout HostCheckReport) {
        var seen = Set<String>()
        for (_, p) in config.allPorts {
            guard let parent = p.create?.parent, seen.insert(parent).inserted else { continue }
            guard let state = try? String(contentsOfFile: "/sys/class/net/\(parent)/operstate", encoding: .utf8) else { continue }
            let s = state.trimmingCharacters(in: .whitespacesAndNewlines)
            if s == "down" {
                r.add(.warn, "parent \(parent)", "link is down: no frames will flow through its macvtaps until it is up")
            } else {
                r.add(.ok, "parent \(parent)", "exists, operstate \(s)")
            }
        }
    }

    static func stateDirectory(_ config: DaemonConfig, host: RecoveringHost, _ r: inout HostCheckReport) {
        guard let dir = config.stateDirectory else { return }
        if StateLock.isHeld(directory: dir) {
            // Checking a file for `systemctl reload` next to the running daemon is normal; a
            // second daemon on this directory would be refused at start, which says so.
            let pid = (try? LinkLedger(directory: dir).read())?.map { " (pid \($0.pid))" } ?? ""
            r.add(.warn, "state directory \(dir)", "in use by a running tapbridge daemon\(pid): its links \(host.leftoverLinks.joined(separator: ", ")) "
                  + "are counted as created by it; a second daemon on this directory would be refused")
            return
        }
        var probe = dir
        while !FileManager.default.fileExists(atPath: probe) { probe = (probe as NSString).deletingLastPathComponent }
        if access(probe, W_OK) != 0 {
            r.add(.fail, "state directory \(dir)", "'\(probe)' is not writable: \(String(cString: strerror(errno)))")
        } else {
            r.add(.ok, "state directory \(dir)", probe == dir ? "writable" : "will be created")
        }
        if let why = LinkLedger.problem(directory: dir) {
            r.add(.fail, "crash-recovery ledger", why)
        }
        if !host.leftoverLinks.isEmpty {
            r.add(.warn, "crash recovery", "a daemon that did not stop cleanly left \(host.leftoverLinks.joined(separator: ", ")): "
                  + "reclaimed if still configured, else deleted, at start")
        }
    }

    static func kernelModule(_ name: String, _ r: inout HostCheckReport) {
        if FileManager.default.fileExists(atPath: "/sys/module/\(name)") {
            r.add(.ok, "kernel \(name)", "loaded"); return
        }
        // A built-in driver without parameters has no /sys/module entry; macvtap's character
        // device major is registered either way.
        if name == "macvtap", let devices = try? String(contentsOfFile: "/proc/devices", encoding: .utf8),
           let line = devices.split(separator: "\n").first(where: { $0.hasSuffix(" macvtap") }) {
            r.add(.ok, "kernel \(name)", "present (character major \(line.split(separator: " ").first ?? "?"))"); return
        }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let option = "CONFIG_\(name.uppercased())"
        switch kernelConfig(release: release)?.split(separator: "\n").first(where: { $0.hasPrefix(option + "=") }) {
        case .some(let l) where l.hasSuffix("=y"): r.add(.ok, "kernel \(name)", "built in (\(option)=y)"); return
        case .some(let l) where l.hasSuffix("=m"): r.add(.ok, "kernel \(name)", "module (\(option)=m), loaded on first use"); return
        case .none: break
        case .some: r.add(.fail, "kernel \(name)", "\(option) is not set in this kernel: macvtap ports cannot be created"); return
        }
        let dir = "/lib/modules/\(release)"
        let builtin = (try? String(contentsOfFile: dir + "/modules.builtin", encoding: .utf8)) ?? ""
        let deps = (try? String(contentsOfFile: dir + "/modules.dep", encoding: .utf8)) ?? ""
        if builtin.contains("/\(name).ko") {
            r.add(.ok, "kernel \(name)", "built in")
        } else if deps.contains("/\(name).ko") {
            r.add(.ok, "kernel \(name)", "module available, loaded on first use")
        } else if !FileManager.default.isReadableFile(atPath: dir) {
            // ProtectKernelModules= (tools/tapbridge.service) hides /usr/lib/modules; the kernel
            // still loads a module a link creation asks for.
            r.add(.warn, "kernel \(name)", "not loaded, no kernel config readable and \(dir) not readable (ProtectKernelModules=?): "
                  + "cannot tell; if it is a module the kernel loads it when the first macvtap is created")
        } else {
            r.add(.fail, "kernel \(name)", "not loaded, and neither the kernel config nor \(dir) shows it (\(option)): "
                  + "macvtap ports cannot be created")
        }
    }

    /// The running kernel's configuration (/boot/config-RELEASE or /proc/config.gz), if readable.
    static func kernelConfig(release: String) -> String? {
        if let s = try? String(contentsOfFile: "/boot/config-\(release)", encoding: .utf8) { return s }
        guard FileManager.default.fileExists(atPath: "/proc/config.gz"), FileManager.default.fileExists(atPath: "/bin/gzip") else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-dc", "/proc/config.gz"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }

    static func ioUring(_ r: inout HostCheckReport) {
        if let s = try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8),
           let v = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)), v != 0 {
            r.add(v == 2 ? .fail : .warn, "io_uring sysctl", "kernel.io_uring_disabled = \(v)"
                  + (v == 2 ? ": io_uring is off for everyone" : ": only root or io_uring_group may use it"))
        }
        let ring: Ring
        do {
            ring = try Ring(entries: 8, completionEntries: 16)
        } catch {
            r.add(.fail, "io_uring", "\(error)"); return
        }
        r.add(.ok, "io_uring", "setup \(ring.features.setupMode)")
        r.add(ring.features.writev ? .ok : .fail, "io_uring WRITEV", ring.features.writev ? "supported" : "not supported by this kernel")
        if ring.features.readMultishot {
            r.add(.ok, "io_uring READ_MULTISHOT", "supported")
        } else {
            r.add(.warn, "io_uring READ_MULTISHOT", "not supported (kernel < 6.7): single-shot reads, more submissions per frame")
        }
        do {
            _ = try BufferRing(ring: ring, group: 0, count: 8, bufferSize: 4096)
            r.add(.ok, "io_uring buffer rings", "provided-buffer ring registered")
        } catch {
            r.add(.fail, "io_uring buffer rings", "\(error) (needs kernel 5.19+)")
        }
    }

    static func capabilities(needsNamespaces: Bool, _ r: inout HostCheckReport) {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let eff = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16) else {
            r.add(.warn, "capabilities", "cannot read CapEff from /proc/self/status"); return
        }
        func cap(_ n: Int, _ name: String, _ why: String, required: Bool = true) {
            if eff & (1 << UInt64(n)) != 0 { r.add(.ok, "capability \(name)", "present (\(why))") }
            else { r.add(required ? .fail : .warn, "capability \(name)", "missing: needed to \(why)") }
        }
        cap(capNetAdmin, "CAP_NET_ADMIN", "create, change and delete links")
        cap(capMknod, "CAP_MKNOD", "make the private node that opens a macvtap's character device")
        cap(capSysAdmin, "CAP_SYS_ADMIN", "enter network namespaces (setns) and mount their sysfs", required: needsNamespaces)
    }

    /// The way MacvtapPort opens a device: a node in a fresh private directory. Tries it with
    /// /dev/null's number (1:3) and removes both.
    static func deviceNode(_ r: inout HostCheckReport) {
        var template = Array("/tmp/tapbridge-check.XXXXXX".utf8CString)
        guard let d = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            r.add(.fail, "device node", "cannot create a private directory in /tmp: \(String(cString: strerror(errno)))"); return
        }
        let dir = String(cString: d)
        let path = dir + "/null"
        defer { unlink(path); rmdir(dir) }
        guard mknod(path, S_IFCHR | 0o600, tb_makedev(1, 3)) == 0 else {
            r.add(.fail, "device node", "mknod in /tmp failed: \(String(cString: strerror(errno))) (needs CAP_MKNOD, no PrivateDevices=)"); return
        }
        do { _ = try Syscall.open(path, O_RDWR | O_CLOEXEC) } catch {   // (opened, then closed at once)
            r.add(.fail, "device node", "a node made in /tmp cannot be opened: \(error.reason) (is /tmp mounted nodev?)"); return
        }
        r.add(.ok, "device node", "character devices can be made and opened in /tmp")
    }
}
