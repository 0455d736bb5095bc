// The spanning tree against the Linux bridge's kernel STP (802.1D): tapbridge (T, in the root
// namespace) and two Linux bridges with STP on (A in one namespace, B in another) joined in a
// triangle of veths. A is root (priority 4096); the A-B link costs 1000, so B reaches A through
// T and the port B blocks is its A-B port. Oracles: the Linux bridges' port states
// (`bridge -j link`), tapbridge's own (`tapbridge ports --json`), ping between the Linux bridges'
// addresses, T's receive counters while broadcasts flow, and the heal when T-A goes down.
import Foundation
import Testing
import TestSupport
@testable import Daemon

@Suite(.serialized) struct SpanningTreeDaemon {
    /// Linux bridge `br0`'s port states in namespace `ns`, by port name.
    func linuxStates(_ t: Topology, _ ns: String) throws -> [String: String] {
        let out = try t.exec(ns, ["bridge", "-j", "link", "show"]).stdout
        let arr = try json(out) as? [[String: Any]] ?? []
        var r: [String: String] = [:]
        for e in arr { if let n = e["ifname"] as? String, let s = e["state"] as? String { r[n] = s } }
        return r
    }

    func tapbridgeStates(_ d: DaemonProcess) throws -> [String: String] {
        let ports = try #require(try cliJSON(d, ["ports"])["ports"] as? [[String: Any]])
        var r: [String: String] = [:]
        for p in ports { if let n = p["name"] as? String { r[n] = (p["stpState"] as? String ?? "-") + "/" + (p["stpRole"] as? String ?? "-") } }
        return r
    }

    func rxFrames(_ d: DaemonProcess) throws -> Int {
        let ports = try #require(try cliJSON(d, ["stats"])["ports"] as? [[String: Any]])
        return ports.reduce(0) { $0 + ($1["rxFrames"] as? Int ?? 0) }
    }

    /// Polls `condition` every 0.25 s until it holds or `timeout` passes; returns the seconds taken.
    func waitUntil(_ timeout: Double, _ condition: () throws -> Bool) rethrows -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if try condition() { return Date().timeIntervalSince(start) }
            usleep(250_000)
        }
        return nil
    }

    /// The triangle: namespaces A and B each with Linux bridge br0 (kernel STP, hello 1 s,
    /// forward delay 4 s, max age 6 s), tapbridge T in the root namespace; T-A and T-B cost 10
    /// on the Linux side (100 on T's), A-B costs 1000. Returns the daemon and the names.
    struct Triangle {
        var d: DaemonProcess
        var nsA: String, nsB: String, pa: String, pb: String, ab: String, ba: String, ma: String, mb: String
    }

    func triangle(_ t: Topology, priorities: (t: Int, a: String, b: String), mode: String = "stp") throws -> Triangle {
        let nsA = try t.addNamespace("sa"), nsB = try t.addNamespace("sb")
        let ta = t.ifname("ta"), tb = t.ifname("tb"), pa = t.ifname("pa"), pb = t.ifname("pb")
        let ab = t.ifname("ab"), ba = t.ifname("ba")
        let ma = t.ifname("ma"), mb = t.ifname("mb")
        // Linux bridges: hello 1 s, forward delay 4 s, max age 6 s (the smallest the kernel takes).
        for (ns, prio) in [(nsA, priorities.a), (nsB, priorities.b)] {
            try t.exec(ns, ["ip", "link", "add", "br0", "type", "bridge", "stp_state", "1", "priority", prio,
                            "hello_time", "100", "forward_delay", "400", "max_age", "600"])
        }
        try t.addVeth(ta, pa); try t.move(pa, to: nsA, up: false)
        try t.addVeth(tb, pb); try t.move(pb, to: nsB, up: false)
        try t.addVeth(ab, ba); try t.move(ab, to: nsA, up: false); try t.move(ba, to: nsB, up: false)
        for (ns, toT, other, addr) in [(nsA, pa, ab, "198.18.40.1/24"), (nsB, pb, ba, "198.18.40.2/24")] {
            try t.exec(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
            try t.exec(ns, ["ip", "link", "set", toT, "master", "br0"])
            try t.exec(ns, ["ip", "link", "set", other, "master", "br0"])
            try t.exec(ns, ["ip", "link", "set", toT, "type", "bridge_slave", "cost", "10"])
            try t.exec(ns, ["ip", "link", "set", other, "type", "bridge_slave", "cost", "1000"])
            try t.exec(ns, ["ip", "addr", "add", addr, "dev", "br0"])
            for l in [toT, other, "br0"] { try t.exec(ns, ["ip", "link", "set", l, "up"]) }
        }
        for v in [ta, tb] { try run(["ip", "link", "set", v, "up"]) }
        let config = """
            metrics = "127.0.0.1:0"
            [[bridges]]
            name = "stp0"
            stp = "\(mode)"
            stp-priority = \(priorities.t)
            stp-hello-time = 1
            stp-forward-delay = 4
            stp-max-age = 6

            [[bridges.ports]]
            name = "\(ma)"
            parent = "\(ta)"
            mode = "passthru"

            [[bridges.ports]]
            name = "\(mb)"
            parent = "\(tb)"
            mode = "passthru"

            """
        let d = try DaemonProcess(t, config: config)
        #expect(d.log.contains(mode == "rstp" ? "spanning tree on (802.1w RSTP)" : "spanning tree on (802.1D)"), "\(d.log)")
        return Triangle(d: d, nsA: nsA, nsB: nsB, pa: pa, pb: pb, ab: ab, ba: ba, ma: ma, mb: mb)
    }

    @Test func triangleWithLinuxBridgesCutsTheLoopAndHeals() throws {
        try withTopology { t in
            let tri = try triangle(t, priorities: (t: 32768, a: "4096", b: "32768"))
            let (d, nsA, nsB, pa, pb, ab, ba, ma, mb) = (tri.d, tri.nsA, tri.nsB, tri.pa, tri.pb, tri.ab, tri.ba, tri.ma, tri.mb)

            // 1. Converged: B blocks its A-B port, everything else forwards.
            let expectedB = [pb: "forwarding", ba: "blocking"]
            let converged = try waitUntil(40) {
                let a = try linuxStates(t, nsA), b = try linuxStates(t, nsB), s = try tapbridgeStates(d)
                return a[pa] == "forwarding" && a[ab] == "forwarding" && b == expectedB
                    && s[ma] == "forwarding/root" && s[mb] == "forwarding/designated"
            }
            let linuxA = try linuxStates(t, nsA), linuxB = try linuxStates(t, nsB), ours = try tapbridgeStates(d)
            try #require(converged != nil, "not converged: A \(linuxA) B \(linuxB) tapbridge \(ours)\n\(d.log)")

            // The bridge-level view: A (priority 4096 = 0x1000) is root, reached through ma.
            let stp = try #require((try cliJSON(d, ["stp"])["bridges"] as? [[String: Any]])?.first)
            #expect(stp["isRoot"] as? Bool == false && stp["rootPort"] as? String == ma, "\(stp)")
            #expect((stp["rootId"] as? String)?.hasPrefix("1000.") == true, "\(stp)")
            #expect(try cli(d, ["ports"]).stdout.contains("forwarding (root)"))
            // And the metrics: port states as gauges (4 = forwarding), labelled with the role.
            let port = try #require(metricsPort(d.log), "no metrics address in the log:\n\(d.log)")
            let labels = ["bridge": "stp0", "handler": "learning-switch"]
            var scrape: [Sample] = []
            _ = try waitUntil(15) {
                scrape = try parseMetrics(httpGet(port: port, path: "/metrics").body)
                return scrape.value("tapbridge_stp_port_state", labels.merging(["port": ma, "role": "root"]) { $1 }) != nil
            }
            #expect(scrape.value("tapbridge_stp_port_state", labels.merging(["port": ma, "role": "root"]) { $1 }) == 4,
                    "\(scrape.filter { $0.name.hasPrefix("tapbridge_stp") })")
            #expect(scrape.value("tapbridge_stp_port_state", labels.merging(["port": mb, "role": "designated"]) { $1 }) == 4)
            #expect(scrape.value("tapbridge_stp_is_root", labels) == 0)
            #expect((scrape.value("tapbridge_stp_bpdus_received_total", labels) ?? 0) > 0)

            // 2. ARP and ping cross tapbridge (B's direct link to A is blocked).
            let ping = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.40.2"], check: false)
            #expect(ping.succeeded, "ping A -> B failed: \(ping.stdout)\n\(d.log)")

            // 3. Broadcasts do not multiply: ARP requests for an absent address (3 per second)
            // add a handful of frames to T's counters, not a storm.
            let before = try rxFrames(d)
            _ = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.3", "-W", "1", "198.18.40.99"], check: false)
            usleep(1_000_000)
            let grew = try rxFrames(d) - before
            #expect(grew < 100, "tapbridge received \(grew) frames during 3 ARP broadcasts (a loop?)")

            // 4. T-A goes down: B's information through T ages out (max age) and its A-B port
            // comes through listening and learning to forwarding: max age + 2 x forward delay.
            try t.exec(nsA, ["ip", "link", "set", pa, "down"])
            let healed = try waitUntil(45) { try linuxStates(t, nsB)[ba] == "forwarding" }
            let after = try linuxStates(t, nsB)
            let oursAfter = try tapbridgeStates(d)
            let h = try #require(healed, "not healed: B \(after) tapbridge \(oursAfter)\n\(d.log)")
            #expect(h <= 6 + 8 + 10, "healed after \(h) s")
            let ping2 = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.40.2"], check: false)
            #expect(ping2.succeeded, "ping after the heal failed: \(ping2.stdout)")
            // tapbridge's port to B is now its root port (A through B); the one to A is disabled.
            let rootAgain = try waitUntil(20) { try tapbridgeStates(d)[mb] == "forwarding/root" }
            let final = try tapbridgeStates(d)
            #expect(rootAgain != nil, "\(final)")
            #expect(d.stop() == 0)
        }
    }

    @Test func tapbridgeAsRootOfLinuxBridges() throws {
        try withTopology { t in
            // T has the lowest priority: both Linux bridges take their root port towards it, and
            // B (the worse of the two) blocks its A-B port.
            let tri = try triangle(t, priorities: (t: 4096, a: "32768", b: "36864"))
            let converged = try waitUntil(40) {
                let a = try linuxStates(t, tri.nsA), b = try linuxStates(t, tri.nsB), s = try tapbridgeStates(tri.d)
                return a == [tri.pa: "forwarding", tri.ab: "forwarding"] && b == [tri.pb: "forwarding", tri.ba: "blocking"]
                    && s[tri.ma] == "forwarding/designated" && s[tri.mb] == "forwarding/designated"
            }
            let a = try linuxStates(t, tri.nsA), b = try linuxStates(t, tri.nsB), s = try tapbridgeStates(tri.d)
            try #require(converged != nil, "not converged: A \(a) B \(b) tapbridge \(s)\n\(tri.d.log)")
            let stp = try #require((try cliJSON(tri.d, ["stp"])["bridges"] as? [[String: Any]])?.first)
            #expect(stp["isRoot"] as? Bool == true && stp["rootPort"] == nil, "\(stp)")
            // Each Linux bridge has a root port, 10 from the root (its port towards T). (Their
            // `root_id` in `ip -d -j link` shows their own identifier here; root_port and
            // root_path_cost are what the kernel's STP decided.)
            for ns in [tri.nsA, tri.nsB] {
                let info = (linkDetails("br0", netns: ns)?["linkinfo"] as? [String: Any])?["info_data"] as? [String: Any] ?? [:]
                #expect((info["root_port"] as? Int ?? 0) != 0 && info["root_path_cost"] as? Int == 10,
                        "\(ns): \(info.filter { $0.key.hasPrefix("root") })")
            }
            let ping = try t.exec(tri.nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.40.2"], check: false)
            #expect(ping.succeeded, "ping A -> B failed: \(ping.stdout)")
            #expect(tri.d.stop() == 0)
        }
    }
}
