// Rapid spanning tree on the wire. (1) Two tapbridge bridges (one daemon) joined by two veth
// links, a loop, with a host namespace on each bridge: the tree converges with one alternate
// port in about a second (forward delay 15 s), ping crosses, broadcasts do not multiply, and when
// the root port's link goes down the alternate takes over in well under 802.1D's 30 s.
// tshark (an independent decoder) reads the BPDUs as "Rapid Spanning Tree" with the roles and
// flags expected. (2) tapbridge RSTP beside two Linux bridges with kernel STP (802.1D) in the
// STP suite's triangle: tapbridge's ports fall back to 802.1D (tshark: version 0 BPDUs from it),
// the loop is cut, ping works. (3) The same with tapbridge as root of the Linux bridges.
import Foundation
import Testing
import TestSupport
@testable import Daemon

@Suite(.serialized) struct RapidSpanningTreeDaemon {
    let stp = SpanningTreeDaemon()

    /// `tapbridge stp BRIDGE --json`'s ports by name: (state, role, protocol, edge).
    func ports(_ d: DaemonProcess, _ bridge: String) throws -> [String: (state: String, role: String, proto: String, edge: Bool)] {
        let b = try #require((try cliJSON(d, ["stp", bridge])["bridges"] as? [[String: Any]])?.first)
        var r: [String: (String, String, String, Bool)] = [:]
        for p in b["ports"] as? [[String: Any]] ?? [] {
            if let n = p["name"] as? String {
                r[n] = (p["state"] as? String ?? "-", p["role"] as? String ?? "-", p["protocol"] as? String ?? "-", p["edge"] as? Bool ?? false)
            }
        }
        return r
    }

    func bridgeInfo(_ d: DaemonProcess, _ bridge: String) throws -> [String: Any] {
        try #require((try cliJSON(d, ["stp", bridge])["bridges"] as? [[String: Any]])?.first)
    }

    /// Up to `count` BPDUs captured on `link` (root namespace) within `seconds`, decoded by tshark.
    func captureBPDUs(_ link: String, count: Int, seconds: Int, source: String? = nil) throws -> String {
        let filter = "ether dst 01:80:c2:00:00:00" + (source.map { " and ether src \($0)" } ?? "")
        return try run(["tshark", "-n", "-i", link, "-f", filter, "-c", "\(count)", "-a", "duration:\(seconds)", "-V"],
                       check: false, timeout: Double(seconds + 20)).stdout
    }

    /// `8000.02abcdef012345` -> `02:ab:cd:ef:01:23:45`.
    func mac(ofBridgeID id: String) -> String {
        let hex = Array(id.split(separator: ".").last ?? "")
        return stride(from: 0, to: hex.count, by: 2).map { String(hex[$0..<min($0 + 2, hex.count)]) }.joined(separator: ":")
    }

    @Test func twoRapidBridgesInALoopConvergeAndFailOverFast() throws {
        try withTopology { t in
            let nsA = try t.addNamespace("ha"), nsB = try t.addNamespace("hb")
            let va1 = t.ifname("va1"), vb1 = t.ifname("vb1"), va2 = t.ifname("va2"), vb2 = t.ifname("vb2")
            let ha = t.ifname("ha"), hA = t.ifname("hA"), hb = t.ifname("hb"), hB = t.ifname("hB")
            let a1 = t.ifname("a1"), a2 = t.ifname("a2"), ah = t.ifname("ah")
            let b1 = t.ifname("b1"), b2 = t.ifname("b2"), bh = t.ifname("bh")
            try t.addVeth(va1, vb1); try t.addVeth(va2, vb2)
            try t.addVeth(ha, hA); try t.addVeth(hb, hB)
            for (ns, l, addr) in [(nsA, hA, "198.18.42.1/24"), (nsB, hB, "198.18.42.2/24")] {
                try t.move(l, to: ns, address: addr)
                try t.exec(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
            }
            for v in [va1, vb1, va2, vb2, ha, hb] { try run(["ip", "link", "set", v, "up"]) }
            func port(_ name: String, _ parent: String, edge: Bool = false) -> String {
                "[[bridges.ports]]\nname = \"\(name)\"\nparent = \"\(parent)\"\nmode = \"passthru\"\n" + (edge ? "stp-edge = true\n" : "") + "\n"
            }
            // Default timers (forward delay 15 s: 802.1D would take 30 s to forward) but hello 1 s.
            let config = """
                metrics = "127.0.0.1:0"
                [[bridges]]
                name = "ra"
                stp = "rstp"
                stp-priority = 4096
                stp-hello-time = 1

                \(port(a1, va1))\(port(a2, va2))\(port(ah, ha, edge: true))
                [[bridges]]
                name = "rb"
                stp = "rstp"
                stp-hello-time = 1

                \(port(b1, vb1))\(port(b2, vb2))\(port(bh, hb, edge: true))
                """
            let d = try DaemonProcess(t, config: config)
            let started = Date()   // once the daemon is running (its start-up is not the protocol's time)
            #expect(d.log.contains("spanning tree on (802.1w RSTP)"), "\(d.log)")

            // 1. Converged: ra (root) designated forwarding on both links; rb: one root port
            // forwarding, one alternate discarding; the host ports edge and forwarding.
            var converged: Double?
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let a = try ports(d, "ra"), b = try ports(d, "rb")
                let roles = Set([b[b1]?.role, b[b2]?.role].compactMap { $0 })
                if a[a1]?.state == "forwarding" && a[a2]?.state == "forwarding" && a[ah]?.state == "forwarding"
                    && roles == ["root", "alternate"] && b[bh]?.state == "forwarding"
                    && [b1, b2].allSatisfy({ b[$0]!.role == "root" ? b[$0]!.state == "forwarding" : b[$0]!.state == "discarding" }) {
                    converged = Date().timeIntervalSince(started)
                    break
                }
                usleep(100_000)
            }
            let a = try ports(d, "ra"), b = try ports(d, "rb")
            let c = try #require(converged, "not converged: ra \(a) rb \(b)\n\(d.log)")
            print("RSTP: two bridges in a loop converged \(String(format: "%.2f", c)) s after the daemon was running (forward delay 15 s)")
            #expect(c < 10, "converged after \(c) s")
            #expect(try bridgeInfo(d, "ra")["isRoot"] as? Bool == true)
            #expect(a[ah]?.edge == true && b[bh]?.edge == true && a[a1]?.edge == false)
            #expect([a1, a2].allSatisfy { a[$0]?.proto == "rstp" } && [b1, b2].allSatisfy { b[$0]?.proto == "rstp" })
            let rootPort = try #require(try bridgeInfo(d, "rb")["rootPort"] as? String)
            let (alternate, rootLink) = rootPort == b1 ? (b2, va1) : (b1, va2)
            #expect(try cli(d, ["ports"]).stdout.contains("discarding (alternate, rstp)"))
            #expect(try cli(d, ["ports"]).stdout.contains("forwarding (designated, rstp, edge)"))
            let text = try cli(d, ["stp", "rb"]).stdout
            #expect(text.contains("bridge rb: rstp id") && text.contains("PROTOCOL") && text.contains("EDGE"), "\(text)")
            // Metrics: the port state gauge (5 discarding, 4 forwarding) with role, protocol, edge.
            let metrics = try #require(metricsPort(d.log), "no metrics address in the log:\n\(d.log)")
            let scrape = try parseMetrics(httpGet(port: metrics, path: "/metrics").body)
            let rb = ["bridge": "rb", "handler": "learning-switch"]
            #expect(scrape.value("tapbridge_stp_port_state", rb.merging(["port": alternate, "role": "alternate", "protocol": "rstp", "edge": "false"]) { $1 }) == 5,
                    "\(scrape.filter { $0.name == "tapbridge_stp_port_state" })")
            #expect(scrape.value("tapbridge_stp_port_state", rb.merging(["port": rootPort, "role": "root", "protocol": "rstp", "edge": "false"]) { $1 }) == 4)
            #expect(scrape.value("tapbridge_stp_port_state", rb.merging(["port": bh, "role": "designated", "protocol": "rstp", "edge": "true"]) { $1 }) == 4)

            // 2. Ping crosses; broadcasts do not multiply.
            let ping = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.42.2"], check: false)
            #expect(ping.succeeded, "ping failed: \(ping.stdout)\n\(d.log)")
            let before = try stp.rxFrames(d)
            _ = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.3", "-W", "1", "198.18.42.99"], check: false)
            let grew = try stp.rxFrames(d) - before
            #expect(grew < 100, "tapbridge received \(grew) frames during 3 ARP broadcasts (a loop?)")

            // 3. tshark decodes ra's hellos as RST BPDUs from a designated, forwarding port.
            let raMAC = mac(ofBridgeID: try #require(try bridgeInfo(d, "ra")["bridgeId"] as? String))
            let cap = try captureBPDUs(vb1, count: 2, seconds: 10, source: raMAC)
            #expect(cap.contains("Rapid Spanning Tree (2)"), "tshark:\n\(cap)")
            #expect(cap.contains("BPDU Type: Rapid/Multiple Spanning Tree (0x02)"), "tshark:\n\(cap)")
            #expect(cap.contains("Port Role: Designated (3)"), "tshark:\n\(cap)")
            #expect(cap.contains("Forwarding: Yes"), "tshark:\n\(cap)")

            // 4. The root port's link goes down: the alternate takes over.
            let down = Date()
            try run(["ip", "link", "set", rootLink, "down"])
            var healed: Double?
            while Date().timeIntervalSince(down) < 30 {
                let p = try ports(d, "rb")
                if p[alternate]?.role == "root" && p[alternate]?.state == "forwarding" { healed = Date().timeIntervalSince(down); break }
                usleep(50_000)
            }
            let after = try ports(d, "rb")
            let h = try #require(healed, "not healed: rb \(after)\n\(d.log)")
            print("RSTP: failover to the alternate port took \(String(format: "%.2f", h)) s (802.1D: max age + 2 x forward delay = 50 s)")
            #expect(h < 10, "healed after \(h) s")
            let ping2 = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.42.2"], check: false)
            #expect(ping2.succeeded, "ping after the failover failed: \(ping2.stdout)\n\(d.log)")
            // The topology change was seen and counted.
            #expect(try cli(d, ["stats"]).stdout.contains("stp_topology_changes"))
            #expect(d.stop() == 0)
        }
    }

    @Test func rapidBesideLinuxBridgesFallsBackTo8021D() throws {
        try withTopology { t in
            let tri = try stp.triangle(t, priorities: (t: 32768, a: "4096", b: "32768"), mode: "rstp")
            let (d, nsA, nsB) = (tri.d, tri.nsA, tri.nsB)
            let expectedB = [tri.pb: "forwarding", tri.ba: "blocking"]
            let converged = try stp.waitUntil(40) {
                let a = try stp.linuxStates(t, nsA), b = try stp.linuxStates(t, nsB), s = try ports(d, "stp0")
                return a[tri.pa] == "forwarding" && a[tri.ab] == "forwarding" && b == expectedB
                    && s[tri.ma]?.state == "forwarding" && s[tri.ma]?.role == "root"
                    && s[tri.mb]?.state == "forwarding" && s[tri.mb]?.role == "designated"
                    && s[tri.ma]?.proto == "stp" && s[tri.mb]?.proto == "stp"
            }
            let linuxA = try stp.linuxStates(t, nsA), linuxB = try stp.linuxStates(t, nsB), ours = try ports(d, "stp0")
            let c = try #require(converged, "not converged: A \(linuxA) B \(linuxB) tapbridge \(ours)\n\(d.log)")
            print("RSTP beside 802.1D Linux bridges: converged in \(String(format: "%.1f", c)) s")
            let info = try bridgeInfo(d, "stp0")
            #expect(info["mode"] as? String == "rstp" && info["rootPort"] as? String == tri.ma, "\(info)")
            #expect((info["rootId"] as? String)?.hasPrefix("1000.") == true, "\(info)")
            #expect(ours[tri.mb]?.edge == false, "a port facing a bridge is no edge port")

            // tshark: what tapbridge sends towards B is 802.1D configuration BPDUs now.
            let ourMAC = mac(ofBridgeID: try #require(info["bridgeId"] as? String))
            let cap = try captureBPDUs(t.ifname("tb"), count: 2, seconds: 10, source: ourMAC)
            #expect(cap.contains("Protocol Version Identifier: Spanning Tree (0)"), "tshark:\n\(cap)")
            #expect(cap.contains("BPDU Type: Configuration (0x00)"), "tshark:\n\(cap)")
            #expect(!cap.contains("Rapid Spanning Tree"), "tshark:\n\(cap)")

            let ping = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.40.2"], check: false)
            #expect(ping.succeeded, "ping A -> B failed: \(ping.stdout)\n\(d.log)")
            let before = try stp.rxFrames(d)
            _ = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.3", "-W", "1", "198.18.40.99"], check: false)
            let grew = try stp.rxFrames(d) - before
            #expect(grew < 100, "tapbridge received \(grew) frames during 3 ARP broadcasts (a loop?)")

            // T-A goes down: B learns it the 802.1D way (its information through T ages out:
            // max age), its A-B port forwards after 2 x forward delay, and tapbridge's port to
            // B becomes its root port as soon as B's better information arrives.
            try t.exec(nsA, ["ip", "link", "set", tri.pa, "down"])
            let healed = try stp.waitUntil(45) {
                try stp.linuxStates(t, nsB)[tri.ba] == "forwarding"
                    && ports(d, "stp0")[tri.mb].map { $0.role == "root" && $0.state == "forwarding" } == true
            }
            let after = try stp.linuxStates(t, nsB), oursAfter = try ports(d, "stp0")
            let h = try #require(healed, "not healed: B \(after) tapbridge \(oursAfter)\n\(d.log)")
            print("RSTP beside 802.1D Linux bridges: healed in \(String(format: "%.1f", h)) s (802.1D's bound: 6 + 2 x 4 s)")
            #expect(h <= 6 + 8 + 10, "healed after \(h) s")
            let ping2 = try t.exec(nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.40.2"], check: false)
            #expect(ping2.succeeded, "ping after the heal failed: \(ping2.stdout)\n\(d.log)")
            #expect(d.stop() == 0)
        }
    }

    @Test func rapidAsRootOfLinuxBridges() throws {
        try withTopology { t in
            // tapbridge (RSTP) has the lowest priority: both Linux bridges take their root port
            // towards it once its ports speak 802.1D, and B blocks its A-B port.
            let tri = try stp.triangle(t, priorities: (t: 4096, a: "32768", b: "36864"), mode: "rstp")
            let converged = try stp.waitUntil(40) {
                let a = try stp.linuxStates(t, tri.nsA), b = try stp.linuxStates(t, tri.nsB), s = try ports(tri.d, "stp0")
                return a == [tri.pa: "forwarding", tri.ab: "forwarding"] && b == [tri.pb: "forwarding", tri.ba: "blocking"]
                    && [tri.ma, tri.mb].allSatisfy { s[$0]?.state == "forwarding" && s[$0]?.role == "designated" && s[$0]?.proto == "stp" }
            }
            let a = try stp.linuxStates(t, tri.nsA), b = try stp.linuxStates(t, tri.nsB), s = try ports(tri.d, "stp0")
            try #require(converged != nil, "not converged: A \(a) B \(b) tapbridge \(s)\n\(tri.d.log)")
            #expect(try bridgeInfo(tri.d, "stp0")["isRoot"] as? Bool == true)
            let ping = try t.exec(tri.nsA, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", "198.18.40.2"], check: false)
            #expect(ping.succeeded, "ping A -> B failed: \(ping.stdout)")
            #expect(tri.d.stop() == 0)
        }
    }
}
