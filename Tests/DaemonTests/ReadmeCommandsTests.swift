// ReadmeCommandsTests: the README's `tapbridge ...` command lines (and docs/capture.md's examples), run as written against the
// topology docs/examples/two-hosts.toml describes (two hosts, a third for `port add`), with the
// example's names mapped to this test's tagged ones (mvt-a -> tbtXXXXma, veth-a -> the test's
// veth, eth0 -> a veth of our own, ...) so parallel tests never collide. A command that stops
// working, or an example name that drifts from the file, fails here.
import Foundation
import Testing
import TestSupport
@testable import Daemon
import Control

@Suite struct ReadmeCommands {
    /// Every line of a ``` block of `markdown` that starts with `tapbridge ` (comments kept:
    /// the shell ignores them).
    static func commandLines(_ markdown: String) -> [String] {
        var inBlock = false
        var out: [String] = []
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inBlock.toggle(); continue }
            if inBlock, line.hasPrefix("tapbridge ") { out.append(String(line)) }
        }
        return out
    }

    /// `text` with each whole-word name of `map` replaced (longest names first).
    static func mapped(_ text: String, _ map: [String: String]) -> String {
        var s = text
        for (from, to) in map.sorted(by: { $0.key.count > $1.key.count }) {
            let escaped = NSRegularExpression.escapedPattern(for: from)
            s = s.replacingOccurrences(of: "(?<![A-Za-z0-9_./-])\(escaped)(?![A-Za-z0-9_-])", with: to, options: .regularExpression)
        }
        return s
    }

    @Test
    func readmeCommandsWorkAsWritten() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let lower = t.ifname("e0")
            try t.addVeth(lower, t.ifname("e1"))
            try run(["ip", "link", "set", lower, "up"])
            let dir = FileManager.default.temporaryDirectory.path + "/\(t.tag)-readme"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            t.onCleanup { try? FileManager.default.removeItem(atPath: dir) }
            for name in ["mvt0", "mvs0"] { t.track(link: t.ifname(name == "mvt0" ? "l0" : "ls")) }
            t.track(link: t.ifname("mc"))

            var map = ["veth-a": h.veths[0], "veth-b": h.veths[1], "veth-c": h.veths[2],
                       "mvt-a": t.ifname("ma"), "mvt-b": t.ifname("mb"), "mvt-c": t.ifname("mc"),
                       "eth0": lower, "mvt0": t.ifname("l0"), "mvs0": t.ifname("ls"), "ha": h.namespaces[0],
                       "out.pcapng": dir + "/out.pcapng", "ring.pcap": dir + "/ring.pcap"]
            let root = packageRoot()
            let example = try String(contentsOfFile: root + "/docs/examples/two-hosts.toml", encoding: .utf8)
            let d = try DaemonProcess(t, config: Self.mapped(example, map))
            map["docs/examples/two-hosts.toml"] = d.configPath
            #expect(h.ping(0, h.addresses[1], count: 2), "\(d.log)")

            let readme = try String(contentsOfFile: root + "/README.md", encoding: .utf8)
            // docs/capture.md's examples too (not its synopsis; Wireshark only where installed).
            let capture = try String(contentsOfFile: root + "/docs/capture.md", encoding: .utf8)
            let hasWireshark = FileManager.default.isExecutableFile(atPath: "/usr/bin/wireshark")
            map["lan.pcapng"] = dir + "/lan.pcapng"
            let lines = Self.commandLines(readme).filter { !$0.hasPrefix("tapbridge run ") }
                + Self.commandLines(capture).filter { !$0.contains("[") && (hasWireshark || !$0.contains("wireshark")) }
            #expect(lines.count >= 20, "\(lines)")
            let exe = tapbridgeExecutable()
            var environment = ProcessInfo.processInfo.environment
            environment["TAPBRIDGE_CONTROL"] = d.controlPath
            for line in lines {
                var command = Self.mapped(line, map)
                command = exe + command.dropFirst("tapbridge".count)
                // Commands that run until stopped (a live capture, the link monitor) get 2 s.
                let endless = command.contains(" capture ") || command.contains(" link monitor")
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/sh")
                p.arguments = ["-c", endless ? "timeout -s INT 2 " + command : command]
                p.environment = environment
                p.currentDirectoryURL = URL(fileURLWithPath: dir)
                let out = Pipe(), err = Pipe()
                p.standardOutput = out
                p.standardError = err
                try p.run()
                let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                let ok = p.terminationStatus == 0 || (endless && p.terminationStatus == 124)
                #expect(ok, "README line failed (\(p.terminationStatus)): \(line)\n  ran: \(command)\n  stdout: \(stdout)\n  stderr: \(stderr)")
                #expect(!stdout.hasPrefix("\n"), "README line printed an empty first line: \(line)")
            }
            // What the fixed lines promise.
            let filters = try #require((try cliJSON(d, ["filter", "list"])["filters"] as? [[String: Any]])?.first)
            #expect(filters["default"] as? String == "drop" && (filters["rules"] as? [[String: Any]])?.count == 2, "\(filters)")
            #expect(linkDetails(t.ifname("l0")) == nil && linkDetails(t.ifname("ls")) == nil && linkDetails(t.ifname("mc")) == nil)
            #expect(d.stop() == 0)
        }
    }

    /// The other fixed commands: `filter list` with no filter says so (no empty line),
    /// `ports` shows no offloads for a VM port, `port add NAME kind vm ...` works.
    @Test func fixedCommandsOnABridgeWithoutFilter() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            let none = try cli(d, ["filter", "list"])
            #expect(none.stdout == "no filter: no bridge has \"filter\" in its pipeline\n", "\(none)")
            let sock = FileManager.default.temporaryDirectory.path + "/\(t.tag)-vm.sock"
            t.onCleanup { unlink(sock) }
            // Anti-spoofing (on by default with a `mac`) needs a source guard in the bridge's
            // pipeline, which is set at start: refused at run time, naming the bridge.
            let guarded = try cli(d, ["port", "add", t.ifname("vm"), "kind", "vm", "path", sock, "mac", "52:54:00:00:00:31", "max-frame", "1518"], check: false)
            #expect(guarded.status != 0 && guarded.stderr.contains("bridge 'br0' runs without a source guard"), "\(guarded)")
            let vm = try cli(d, ["port", "add", t.ifname("vm"), "kind", "vm", "path", sock, "mac", "52:54:00:00:00:31", "max-frame", "1518", "anti-spoofing", "false"])
            #expect(vm.stdout.contains("added to bridge br0"), "\(vm)")
            let ports = try #require(try cliJSON(d, ["ports"])["ports"] as? [[String: Any]])
            let vmPort = try #require(ports.first { $0["name"] as? String == t.ifname("vm") }, "\(ports)")
            #expect(vmPort["offloads"] as? Bool == false, "\(vmPort)")
            let table = try cli(d, ["ports"]).stdout
            let row = try #require(table.split(separator: "\n").first { $0.contains(t.ifname("vm")) })
            #expect(!row.contains(" on "), "\(row)")
            #expect(d.stop() == 0)
        }
    }
}
