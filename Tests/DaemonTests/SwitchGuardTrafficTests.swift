// SwitchGuardTrafficTests: the learning switch's guards with real frames. A loop (two ports of
// the daemon reaching one namespace LAN through a Linux bridge with STP off) does not storm
// with the loop guard on: one port is blocked, broadcast counters stay bounded, the port comes
// back after the back-off (and is blocked again when the loop shows again). A port's MAC
// limit drops a second MAC until `tapbridge fdb flush` frees the port, and `tapbridge fdb
// monitor --json` reports the learn, limit and flush events as they happen.
import Foundation
import Testing
import TestSupport
@testable import Daemon

/// Handler counter `name` of the learning switch from `tapbridge stats --json`.
private func switchCounter(_ d: DaemonProcess, _ name: String) throws -> Int {
    let handlers = try cliJSON(d, ["stats"])["handlers"] as? [[String: Any]] ?? []
    return handlers.filter { $0["counter"] as? String == name }.compactMap { $0["value"] as? Int }.reduce(0, +)
}

/// rx frames of each port, by name.
private func rxFrames(_ d: DaemonProcess) throws -> [String: Int] {
    let ports = try cliJSON(d, ["stats"])["ports"] as? [[String: Any]] ?? []
    var out: [String: Int] = [:]
    for p in ports { if let n = p["name"] as? String { out[n] = p["rxFrames"] as? Int ?? 0 } }
    return out
}

/// tx frames of each port, by name.
private func txFrames(_ d: DaemonProcess) throws -> [String: Int] {
    let ports = try cliJSON(d, ["stats"])["ports"] as? [[String: Any]] ?? []
    var out: [String: Int] = [:]
    for p in ports { if let n = p["name"] as? String { out[n] = p["txFrames"] as? Int ?? 0 } }
    return out
}

/// Polls `cond` until it holds or `timeout` passes.
private func eventually(_ timeout: Double = 30, _ cond: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try cond() { return true }
        usleep(100_000)
    }
    return try cond()
}

private func occurrences(_ text: String, _ s: String) -> Int { text.components(separatedBy: s).count - 1 }

@Suite(.serialized) struct SwitchGuardTraffic {
    @Test func loopThroughALinuxBridgeIsCutByTheLoopGuard() throws {
        try withTopology { t in
            // The LAN: a Linux bridge (STP off) with an address of its own, in its own namespace.
            let lan = try t.addNamespace("lan")
            try t.exec(lan, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
            try run(["ip", "-n", lan, "link", "add", "lanbr", "type", "bridge", "stp_state", "0"])
            try run(["ip", "-n", lan, "addr", "add", "198.18.0.10/24", "dev", "lanbr"])
            try run(["ip", "-n", lan, "link", "set", "lanbr", "up"])
            // Two uplinks: veths whose root ends carry the daemon's passthru macvtaps.
            var uplinks: [String] = []
            for s in ["a", "b"] {
                let root = t.ifname("u" + s), peer = t.ifname("p" + s)
                try t.addVeth(root, peer)
                try t.move(peer, to: lan, up: false)
                try run(["ip", "-n", lan, "link", "set", peer, "master", "lanbr"])
                try run(["ip", "-n", lan, "link", "set", peer, "up"])
                try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(root)/disable_ipv6", atomically: false, encoding: .utf8)
                try run(["ip", "link", "set", root, "up"])
                uplinks.append(root)
            }
            let m = [t.ifname("ma"), t.ifname("mb")]
            let ports = (0..<2).map { i in
                "[[bridges.ports]]\nname = \"\(m[i])\"\nparent = \"\(uplinks[i])\"\nmode = \"passthru\"\n"
            }.joined()
            let d = try DaemonProcess(t, config: """
                [[bridges]]
                name = "lan"
                [bridges.learning-switch]
                loop-guard = true
                block-seconds = 3
                \(ports)
                """)
            // ARP requests for an address nobody has: broadcasts into the loop.
            _ = try t.exec(lan, ["ping", "-c", "2", "-i", "0.5", "-W", "1", "198.18.0.99"], check: false)
            try d.waitFor("port blocked by the switch's guard", timeout: 30)
            #expect(try switchCounter(d, "guard_blocked_ports") == 1, "\(d.log)")
            #expect(try switchCounter(d, "guard_loop_echo_blocks") + switchCounter(d, "guard_loop_move_blocks") >= 1)
            // No storm: with the loop cut, what the ports receive stops growing (a storm adds
            // tens of thousands of frames a second).
            let first = try rxFrames(d)
            #expect(first.values.reduce(0, +) < 5000, "\(first)")
            usleep(1_000_000)
            let second = try rxFrames(d)
            #expect(second.values.reduce(0, +) - first.values.reduce(0, +) < 200, "\(first) -> \(second)")
            // The back-off ends; the next broadcast shows the loop again and the guard cuts it again.
            try d.waitFor("port unblocked after the back-off", timeout: 30)
            #expect(try eventually { try switchCounter(d, "guard_blocked_ports") == 0 })
            _ = try t.exec(lan, ["ping", "-c", "2", "-i", "0.5", "-W", "1", "198.18.0.98"], check: false)
            #expect(eventually { occurrences(d.log, "port blocked by the switch's guard") >= 2 }, "\(d.log)")
            let third = try rxFrames(d)
            #expect(third.values.reduce(0, +) < 10000, "\(third)")
            #expect(d.stop() == 0)
        }
    }

    @Test func macLimitDropsASecondMACUntilFlushAndMonitorReportsIt() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"lan\"\n" + h.portTables(extra: [0: "max-macs = 1"]))
            // Watch the FDB from the start.
            let eventsPath = d.logPath + ".events"
            let monitor = Process()
            monitor.executableURL = URL(fileURLWithPath: tapbridgeExecutable())
            monitor.arguments = ["fdb", "monitor", "--json", "--control", d.controlPath]
            _ = FileManager.default.createFile(atPath: eventsPath, contents: nil)
            monitor.standardOutput = FileHandle(forWritingAtPath: eventsPath)
            monitor.standardError = FileHandle.nullDevice
            try monitor.run()
            t.onCleanup {
                if monitor.isRunning { kill(monitor.processIdentifier, SIGKILL); monitor.waitUntilExit() }
                try? FileManager.default.removeItem(atPath: eventsPath)
            }
            try d.waitFor("fdb monitor started", timeout: 20)
            var events: String { (try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? "" }
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")
            #expect(eventually { events.contains("\"event\":\"learn\"") && events.contains(h.macs[0]) }, "\(events)")

            // Host 0 takes another MAC: its port is at its limit, so the new MAC gets nowhere.
            let newMAC = "02:00:00:00:00:aa"
            try run(["ip", "-n", h.namespaces[0], "link", "set", "eth0", "address", newMAC])
            try run(["ip", "-n", h.namespaces[0], "neigh", "flush", "all"])
            try run(["ip", "-n", h.namespaces[1], "neigh", "flush", "all"])
            #expect(!h.ping(0, h.addresses[1], count: 2))
            #expect(try switchCounter(d, "guard_mac_limit_drops") > 0)
            #expect(eventually { events.contains("\"event\":\"limit\"") }, "\(events)")

            // Flushing the port's learned entries frees it: the new MAC is learned, ping works.
            let out = try cli(d, ["fdb", "flush", "lan", "port", h.macvtaps[0], "dynamic"]).stdout
            #expect(out.contains("1 entry flushed from bridge lan"), "\(out)")
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")
            let fdb = try cliJSON(d, ["fdb", "lan"])["entries"] as? [[String: Any]] ?? []
            #expect(fdb.contains { $0["mac"] as? String == newMAC && $0["port"] as? String == h.macvtaps[0] }, "\(fdb)")
            #expect(eventually { events.contains("\"event\":\"flush\"") && events.contains(newMAC) }, "\(events)")
            // Every line is one JSON object naming bridge and port.
            for line in events.split(separator: "\n") {
                let o = try #require(try json(String(line)) as? [String: Any], "\(line)")
                #expect(o["bridge"] as? String == "lan" && o["port"] is String)
            }
            kill(monitor.processIdentifier, SIGINT)
            monitor.waitUntilExit()
            // A flush of everything, and errors naming what is wrong.
            #expect(try cli(d, ["fdb", "flush"]).stdout.contains("flushed from bridge lan"))
            let bad = try cli(d, ["fdb", "flush", "lan", "port", "nosuch"], check: false)
            #expect(!bad.succeeded && bad.stderr.contains("nosuch"), "\(bad.stderr)")
            #expect(d.stop() == 0)
        }
    }

    @Test func reloadTurnsOnFloodSwitchesAndStormControl() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"lan\"\n" + h.portTables())
            let arp = { (n: Int) in _ = try? t.exec(h.namespaces[0], ["ping", "-c", "\(n)", "-i", "0.3", "-W", "1", "198.18.0.99"], check: false) }
            // Before: host 0's ARP broadcasts reach host 2's port.
            let before = try txFrames(d)[h.macvtaps[2]] ?? 0
            arp(1)
            #expect(try eventually { (try txFrames(d)[h.macvtaps[2]] ?? 0) > before })
            // SIGHUP with bcast-flood off on port 2 and a broadcast storm limit on port 0.
            try ("[[bridges]]\nname = \"lan\"\n" + h.portTables(extra: [0: "storm-broadcast = 5", 2: "bcast-flood = false"]))
                .write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("info reloaded", timeout: 30)
            #expect(occurrences(d.log, "switch guard keys reloaded") == 2, "\(d.log)")
            let held = try txFrames(d)[h.macvtaps[2]] ?? 0
            arp(2)
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")   // host 1 still gets broadcasts
            #expect(try txFrames(d)[h.macvtaps[2]] ?? 0 == held)
            // Storm control: 60 broadcast pings in ~0.6 s, about 5 (+5/s) get through.
            let port1 = try txFrames(d)[h.macvtaps[1]] ?? 0
            _ = try t.exec(h.namespaces[0], ["ping", "-b", "-c", "60", "-i", "0.01", "-W", "1", "198.18.0.255"], check: false)
            #expect(try eventually { try switchCounter(d, "guard_storm_broadcast_drops") >= 40 }, "\(d.log)")
            let through = (try txFrames(d)[h.macvtaps[1]] ?? 0) - port1
            #expect(through >= 3 && through <= 20, "\(through) broadcast frames passed")
            #expect(d.stop() == 0)
        }
    }

    @Test func portAddTakesGuardKeys() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let two = "[[bridges]]\nname = \"lan\"\n" + h.portTables().components(separatedBy: "[[bridges.ports]]").dropFirst().prefix(2)
                .map { "[[bridges.ports]]" + $0 }.joined()
            let d = try DaemonProcess(t, config: two)
            let out = try cli(d, ["port", "add", h.macvtaps[2], "parent", h.veths[2], "mode", "passthru",
                                  "bcast-flood", "false", "max-macs", "1", "max-macs-action", "drop"]).stdout
            #expect(out.contains("added to bridge lan"), "\(out)")
            // Host 2 reaches host 0 (its own broadcasts go out; the replies are unicast)...
            #expect(h.ping(2, h.addresses[0]), "\(d.log)")
            // ...but no broadcast leaves by its port: host 0's ARP for host 1 does not reach it.
            let held = try txFrames(d)[h.macvtaps[2]] ?? 0
            try run(["ip", "-n", h.namespaces[0], "neigh", "flush", "all"])
            #expect(h.ping(0, h.addresses[1]))
            #expect(try txFrames(d)[h.macvtaps[2]] ?? 0 == held)
            let bad = try cli(d, ["port", "add", t.ifname("zz"), "max-macs-action", "shut"], check: false)
            #expect(!bad.succeeded && bad.stderr.contains("max-macs-action: must be 'drop' or 'block', not 'shut'"), "\(bad.stderr)")
            #expect(d.stop() == 0)
        }
    }
}
