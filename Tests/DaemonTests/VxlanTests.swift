// VxlanTests: one segment across "hosts" over the kernel's VXLAN, a tapbridge daemon in each.
// Every host is a network namespace with an underlay interface on a shared underlay (a kernel
// bridge in its own namespace, 198.19.0.0/24) and a namespace "VM" (198.18.0.0/24) behind a
// passthru macvtap; the daemon runs inside the host namespace (`ip netns exec`) with a
// `kind = "vxlan"` port to the others. Oracles: ping and iperf3 between the VMs, the daemon's
// FDB and port counters (64 KiB GSO frames on the vxlan port), the kernel's VXLAN FDB, ARP
// requests counted by tcpdump in every VM, and `ip link` after stop.
import Foundation
import Testing
import TestSupport

/// Hosts on one underlay, each with a VM behind a veth (`vmlink` in the host, `eth0` in the VM).
struct OverlayHosts {
    let t: Topology
    var hosts: [String] = []
    var vms: [String] = []
    var underlayAddresses: [String] = []
    var vmAddresses: [String] = []
    var vmMACs: [String] = []
    let underlay: String

    init(_ t: Topology, count: Int) throws {
        self.t = t
        underlay = try t.addNamespace("ul")
        try t.exec(underlay, ["ip", "link", "add", "sw", "type", "bridge"])
        try t.exec(underlay, ["ip", "link", "set", "sw", "up"])
        for _ in 0..<count { try addHost() }
    }

    /// Adds host i (198.19.0.<i+1> on its underlay link `ulnk`) and its VM (198.18.0.<i+1>, MTU 1450).
    mutating func addHost() throws {
        let i = hosts.count
        let host = try t.addNamespace("h\(i)"), vm = try t.addNamespace("v\(i)")
        for ns in [host, vm] {
            try t.exec(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
        }
        let port = "u\(i)"
        try run(["ip", "link", "add", "ulnk", "netns", host, "type", "veth", "peer", "name", port, "netns", underlay])
        try t.exec(underlay, ["ip", "link", "set", port, "master", "sw", "up"])
        let ul = "198.19.0.\(i + 1)"
        try t.exec(host, ["ip", "addr", "add", ul + "/24", "dev", "ulnk"])
        try t.exec(host, ["ip", "link", "set", "ulnk", "up"])
        try run(["ip", "link", "add", "vmlink", "netns", host, "type", "veth", "peer", "name", "eth0", "netns", vm])
        let mac = String(format: "02:00:00:00:0a:%02x", i + 1), addr = "198.18.0.\(i + 1)"
        try t.exec(vm, ["ip", "link", "set", "eth0", "address", mac, "mtu", "1450"])
        try t.exec(vm, ["ip", "addr", "add", addr + "/24", "dev", "eth0"])
        try t.exec(vm, ["ip", "link", "set", "eth0", "up"])
        try t.exec(host, ["ip", "link", "set", "vmlink", "up"])
        hosts.append(host); vms.append(vm); underlayAddresses.append(ul); vmAddresses.append(addr); vmMACs.append(mac)
    }

    /// Host i's configuration: its VM's macvtap and a vxlan port to `remotes` (host indices).
    /// `group`: a multicast group instead of the remote list (flood and learn).
    func config(_ i: Int, remotes: [Int], group: String? = nil) -> String {
        """
        [[bridges]]
        name = "lan"
        [[bridges.ports]]
        name = "mvm"
        parent = "vmlink"
        mode = "passthru"
        [[bridges.ports]]
        name = "vx0"
        kind = "vxlan"
        vni = 4242
        local = "\(underlayAddresses[i])"
        underlay = "ulnk"
        \(group.map { "group = \"\($0)\"" } ?? "remotes = [\(remotes.map { "\"\(underlayAddresses[$0])\"" }.joined(separator: ", "))]")
        """
    }

    /// Starts host i's daemon inside the host namespace.
    /// `stateDir`: a ledger shared with an earlier daemon of this host (crash recovery).
    func daemon(_ i: Int, remotes: [Int], stateDir: String? = nil) throws -> DaemonProcess {
        try DaemonProcess(t, config: config(i, remotes: remotes), arguments: stateDir.map { ["--state-dir", $0] } ?? [],
                          wrapper: ["ip", "netns", "exec", hosts[i]])
    }

    func ping(_ from: Int, _ to: Int, count: Int = 3) -> Bool {
        (try? t.exec(vms[from], ["ping", "-c", "\(count)", "-i", "0.2", "-W", "5", vmAddresses[to]], check: false).succeeded) ?? false
    }

    /// ARP requests for `target` seen on each VM's eth0 while VM `from` tries to reach it (one
    /// ping: the kernel sends its solicitations, bounded). tcpdump runs for `window` seconds.
    func arpRequestsSeen(from: Int, target: String, window: Int = 5) throws -> [Int] {
        var captures: [(BackgroundCommand, String)] = []
        for (i, vm) in vms.enumerated() {
            let base = FileManager.default.temporaryDirectory.path + "/\(t.tag)-arp\(i)"
            let c = try BackgroundCommand(["ip", "netns", "exec", vm, "sh", "-c",
                                           "exec timeout -s INT -k 2 \(window) tcpdump -i eth0 -nl 'arp and host \(target)' > \(base).out 2> \(base).err"],
                                          cleanup: t)
            captures.append((c, base))
            t.onCleanup { for s in [".out", ".err"] { try? FileManager.default.removeItem(atPath: base + s) } }
        }
        // Synchronise on every tcpdump saying it listens.
        let deadline = Date().addingTimeInterval(30)
        for (_, base) in captures {
            while !((try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "").contains("listening on") {
                guard Date() < deadline else { throw HarnessError("tcpdump did not start: \(base)") }
                usleep(20_000)
            }
        }
        _ = try t.exec(vms[from], ["ping", "-c", "1", "-W", "2", target], check: false)
        return captures.map { c, base in
            c.process.waitUntilExit()
            let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
            return out.split(separator: "\n").filter { $0.contains("Request who-has \(target)") }.count
        }
    }

    /// Link names in host i's namespace.
    func links(_ i: Int) throws -> Set<String> { try linkNames(netns: hosts[i]) }
}

@Suite(.serialized) struct VxlanPortTests {
    @Test func twoHostsPingIperfLearnAndStopClean() throws {
        try withTopology { t in
            let o = try OverlayHosts(t, count: 2)
            let d0 = try o.daemon(0, remotes: [1])
            let d1 = try o.daemon(1, remotes: [0])
            // The device is what the port asks for, MTU the underlay's minus 50.
            let vx = try #require(linkDetails("vx0", netns: o.hosts[0]), "no vx0 in \(o.hosts[0])")
            let data = ((vx["linkinfo"] as? [String: Any])?["info_data"] as? [String: Any]) ?? [:]
            #expect(data["id"] as? Int == 4242 && data["port"] as? Int == 4789 && data["local"] as? String == "198.19.0.1", "\(data)")
            #expect(vx["mtu"] as? Int == 1450, "\(vx)")
            let fdb = try t.exec(o.hosts[0], ["bridge", "fdb", "show", "dev", "vx0"]).stdout
            #expect(fdb.contains("00:00:00:00:00:00 dst 198.19.0.2"), "head-end replication entry: \(fdb)")

            #expect(o.ping(0, 1), "VM0 -> VM1 over VXLAN:\n\(d0.log)\n\(d1.log)")
            // The remote VM's MAC is learned on the vxlan port, on both sides.
            for (d, remote) in [(d0, 1), (d1, 0)] {
                let entries = try #require(try cliJSON(d, ["fdb"])["entries"] as? [[String: Any]])
                let e = entries.first { $0["mac"] as? String == o.vmMACs[remote] }
                #expect(e?["port"] as? String == "vx0", "remote MAC on the vxlan port: \(entries)")
            }
            // ports shows the tunnel.
            let ports = try #require(try cliJSON(d0, ["ports"])["ports"] as? [[String: Any]])
            let p = try #require(ports.first { $0["name"] as? String == "vx0" }, "\(ports)")
            let tunnel = p["vxlan"] as? [String: Any]
            #expect(p["kind"] as? String == "vxlan" && p["state"] as? String == "up", "\(p)")
            #expect(tunnel?["vni"] as? Int == 4242 && tunnel?["floodRemotes"] as? [String] == ["198.19.0.2"], "\(p)")
            let text = try cli(d0, ["ports"]).stdout
            #expect(text.contains("VXLAN") && text.contains("4242"), "\(text)")

            // TCP with GSO over the overlay: 64 KiB frames cross the vxlan port whole.
            var h = try Hosts(t, count: 0)
            h.namespaces = o.vms; h.addresses = o.vmAddresses
            let (sent, received) = try iperf(h, from: 0, to: 1, seconds: 2)
            #expect(sent > 0 && received > 0, "iperf3 sent \(sent) received \(received)")
            let stats = try #require(try cliJSON(d0, ["stats", "vx0"])["ports"] as? [[String: Any]]).first
            #expect((stats?["txLargeFrames"] as? Int ?? 0) > 0, "GSO frames into the overlay: \(String(describing: stats))")
            #expect((stats?["tunnel"] as? String)?.contains("vni 4242") == true, "\(String(describing: stats))")

            // Stopping a daemon deletes its vxlan device and both macvtaps; a restart rejoins.
            #expect(d1.stop() == 0)
            let left = try o.links(1)
            #expect(!left.contains("vx0") && !left.contains("mvvx0") && !left.contains("mvm"), "left behind: \(left)")
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-vxstate"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state) }
            let d1b = try o.daemon(1, remotes: [0], stateDir: state)
            #expect(o.ping(1, 0), "after restart:\n\(d1b.log)")
            // Killed: the links stay; the next start deletes them (recovery) and makes them again.
            d1b.stop(signal: SIGKILL)
            #expect(try o.links(1).isSuperset(of: ["vx0", "mvvx0"]))
            let d1c = try o.daemon(1, remotes: [0], stateDir: state)
            #expect(d1c.log.contains("left-over link deleted"), "\(d1c.log)")
            #expect(o.ping(1, 0), "after a crash and a restart:\n\(d1c.log)")
            #expect(d0.stop() == 0 && d1c.stop() == 0)
            for i in 0..<2 { #expect(try o.links(i).isDisjoint(with: ["vx0", "mvvx0", "mvm"])) }
        }
    }

    @Test func aMulticastGroupInsteadOfRemotes() throws {
        try withTopology { t in
            let o = try OverlayHosts(t, count: 2)
            let ds = try (0..<2).map { i in
                try DaemonProcess(t, config: o.config(i, remotes: [], group: "239.1.1.42"), wrapper: ["ip", "netns", "exec", o.hosts[i]])
            }
            let vx = try #require(linkDetails("vx0", netns: o.hosts[0]))
            let data = ((vx["linkinfo"] as? [String: Any])?["info_data"] as? [String: Any]) ?? [:]
            #expect(data["group"] as? String == "239.1.1.42" && data["learning"] as? Bool == true, "\(data)")
            #expect(o.ping(0, 1), "over the multicast group:\n\(ds[0].log)\n\(ds[1].log)")
            let ports = try #require(try cliJSON(ds[0], ["ports"])["ports"] as? [[String: Any]])
            let tunnel = ports.first { $0["name"] as? String == "vx0" }?["vxlan"] as? [String: Any]
            #expect(tunnel?["remotes"] as? String == "group 239.1.1.42", "\(String(describing: tunnel))")
            for d in ds { #expect(d.stop() == 0) }
        }
    }

    @Test func portAddAndDelOfAVxlanPort() throws {
        try withTopology { t in
            let o = try OverlayHosts(t, count: 2)
            let d1 = try o.daemon(1, remotes: [0])
            // Host 0 starts with its VM only; the tunnel comes over the control socket.
            let d0 = try DaemonProcess(t, config: """
                [[bridges]]
                name = "lan"
                [[bridges.ports]]
                name = "mvm"
                parent = "vmlink"
                mode = "passthru"
                """, wrapper: ["ip", "netns", "exec", o.hosts[0]])
            let added = try cli(d0, ["port", "add", "vx0", "kind", "vxlan", "vni", "4242", "local", "198.19.0.1",
                                     "underlay", "ulnk", "remotes", "198.19.0.2"])
            #expect(added.stdout.contains("port vx0 added") && added.stdout.contains("(link created)"), "\(added.stdout)\(added.stderr)")
            #expect(o.ping(0, 1), "over a vxlan port added at run time:\n\(d0.log)")
            let bad = try cli(d0, ["port", "add", "vx1", "kind", "vxlan", "vni", "7", "local", "198.19.0.1", "underlay", "nosuch",
                                   "remotes", "198.19.0.2"], check: false)
            #expect(!bad.succeeded && bad.stderr.contains("underlay"), "\(bad.stdout)\(bad.stderr)")
            let deleted = try cli(d0, ["port", "del", "vx0"])
            #expect(deleted.stdout.contains("vx0"), "\(deleted.stdout)")
            #expect(try o.links(0).isDisjoint(with: ["vx0", "mvvx0", "vx1", "mvvx1"]), "port del deletes the device and its macvtap")
            #expect(d0.stop() == 0 && d1.stop() == 0)
        }
    }

    @Test func aThirdHostJoinsByReloadAndBroadcastsReachEachRemoteOnce() throws {
        try withTopology { t in
            var o = try OverlayHosts(t, count: 2)
            let d0 = try o.daemon(0, remotes: [1])
            let d1 = try o.daemon(1, remotes: [0])
            #expect(o.ping(0, 1), "two hosts first:\n\(d0.log)")
            try o.addHost()
            let d2 = try o.daemon(2, remotes: [0, 1])
            // Hosts 0 and 1 learn of host 2 by reloading their files.
            for (d, i, remotes) in [(d0, 0, [1, 2]), (d1, 1, [0, 2])] {
                try o.config(i, remotes: remotes).write(toFile: d.configPath, atomically: true, encoding: .utf8)
                kill(d.process.processIdentifier, SIGHUP)
                try d.waitFor("vxlan remotes reloaded")
                let fdb = try t.exec(o.hosts[i], ["bridge", "fdb", "show", "dev", "vx0"]).stdout
                #expect(fdb.contains("00:00:00:00:00:00 dst 198.19.0.3"), "\(fdb)")
            }
            #expect(o.ping(0, 2) && o.ping(2, 1), "full mesh:\n\(d0.log)\n\(d1.log)\n\(d2.log)")
            // One ARP request from VM0 for an absent address: each VM sees exactly what VM0 sent
            // (head-end replication sends one copy per remote; nothing comes back from the
            // overlay into it, so no copy multiplies in a full mesh).
            let seen = try o.arpRequestsSeen(from: 0, target: "198.18.0.99")
            #expect(seen[0] >= 1 && seen[1] == seen[0] && seen[2] == seen[0], "ARP requests seen by VM0, VM1, VM2: \(seen)")
            // The control socket reports the new remote list.
            #expect(d0.process.isRunning, "daemon 0 runs:\n\(d0.log)")
            let ports = try #require(try cliJSON(d0, ["ports"])["ports"] as? [[String: Any]])
            let tunnel = ports.first { $0["name"] as? String == "vx0" }?["vxlan"] as? [String: Any]
            #expect(Set(tunnel?["floodRemotes"] as? [String] ?? []) == ["198.19.0.2", "198.19.0.3"], "\(String(describing: tunnel))")
            // A host leaving the file stops getting floods.
            try o.config(0, remotes: [1]).write(toFile: d0.configPath, atomically: true, encoding: .utf8)
            kill(d0.process.processIdentifier, SIGHUP)
            try d0.waitFor("removed=198.19.0.3")
            let fdb = try t.exec(o.hosts[0], ["bridge", "fdb", "show", "dev", "vx0"]).stdout
            #expect(!fdb.contains("00:00:00:00:00:00 dst 198.19.0.3"), "\(fdb)")
            #expect(d0.stop() == 0 && d1.stop() == 0 && d2.stop() == 0)
        }
    }
}
