// `ip link` parity (issue #16): mode change, nodst, txqueuelen, promisc, alias, rename,
// statistics, `show type KIND` and the global `-n NS` — each done by tapbridge and read back with
// `ip -d -j link show` / `ip -s -j link show` as the oracle. Everything lives in a namespace of
// the test's own (deleted at the end, taking its links with it), so a rename leaves nothing behind.
import Foundation
import Testing
import Frames
@testable import Netlink
import TestSupport

/// `ip -n NS -s [-s] -j link show NAME`'s `stats64`.
func ipStats(_ name: String, ns: String, level: Int = 1) throws -> [String: [String: Int]] {
    let argv = ["ip", "-n", ns] + Array(repeating: "-s", count: level) + ["-j", "link", "show", name]
    let arr = try json(try run(argv).stdout) as! [[String: Any]]
    let s = arr[0]["stats64"] as! [String: Any]
    return s.mapValues { ($0 as! [String: Any]).mapValues { ($0 as! NSNumber).intValue } }
}

@Suite(.serialized) struct LinkParityTests {
    /// A veth pair inside a fresh namespace and a macvtap/macvlan on one end.
    func setUp(_ t: Topology, kind: LinkKind = .macvtap, mode: MacvlanMode = .bridge)
        throws -> (ns: String, lower: String, peer: String, link: String, manager: LinkManager) {
        let ns = try t.addNamespace("lp")
        let lower = t.ifname("lo0"), peer = t.ifname("lo1"), link = t.ifname("mv")
        try run(["ip", "-n", ns, "link", "add", lower, "type", "veth", "peer", "name", peer])
        let m = try LinkManager(namespace: .named(ns))
        try m.create(LinkSpec(kind: kind, parent: lower, name: link, mode: mode))
        return (ns, lower, peer, link, m)
    }

    @Test func modeChangesAsIpLinkSetTypeMacvtapModeDoes() throws {
        try withTopology { t in
            let s = try setUp(t)
            for mode in [MacvlanMode.vepa, .private, .source, .bridge] {
                try s.manager.change(name: s.link, LinkChange(mode: mode))
                #expect(infoData(try ipLink(s.link, ns: s.ns))["mode"] as? String == mode.rawValue)
                #expect(try s.manager.link(named: s.link)?.mode == mode)
            }
            // passthru can be neither set nor cleared: said before the kernel is asked.
            let e = #expect(throws: NetlinkError.self) { try s.manager.change(name: s.link, LinkChange(mode: .passthru)) }
            #expect(e?.description.contains("mode 'passthru' can be neither set nor cleared") == true)
            // `type` must name the link's kind.
            let k = #expect(throws: NetlinkError.self) { try s.manager.change(name: s.link, LinkChange(mode: .vepa, kind: .macvlan)) }
            #expect(k?.description.contains("is a macvtap, not a macvlan") == true)
        }
    }

    @Test func nodstOfSourceMode() throws {
        try withTopology { t in
            let s = try setUp(t, kind: .macvlan, mode: .bridge)
            let wrongMode = #expect(throws: NetlinkError.self) { try s.manager.change(name: s.link, LinkChange(noDst: true)) }
            #expect(wrongMode?.description.contains("'nodst' applies to mode 'source' only, not 'bridge'") == true)
            try s.manager.change(name: s.link, LinkChange(mode: .source, noDst: true))
            let data = infoData(try ipLink(s.link, ns: s.ns))
            #expect(data["mode"] as? String == "source" && data["nodst"] as? Bool == true)
            #expect(try s.manager.link(named: s.link)?.noDst == true)
            try s.manager.change(name: s.link, LinkChange(noDst: false))
            #expect(infoData(try ipLink(s.link, ns: s.ns))["nodst"] == nil)
            // Created with nodst.
            let other = t.ifname("mvd")
            var spec = LinkSpec(kind: .macvlan, parent: s.lower, name: other, mode: .source)
            spec.noDst = true
            try s.manager.create(spec)
            #expect(infoData(try ipLink(other, ns: s.ns))["nodst"] as? Bool == true)
        }
    }

    @Test func txqueuelenPromiscAliasAndRename() throws {
        try withTopology { t in
            let s = try setUp(t)
            try s.manager.change(name: s.link, LinkChange(up: true, promisc: true, txQueueLength: 77, alias: "rack 4 uplink"))
            var l = try ipLink(s.link, ns: s.ns)
            #expect(l["txqlen"] as? Int == 77 && l["ifalias"] as? String == "rack 4 uplink")
            #expect((l["flags"] as? [String])?.contains("PROMISC") == true && l["promiscuity"] as? Int == 1)
            let mine = try #require(try s.manager.link(named: s.link))
            #expect(mine.txQueueLength == 77 && mine.alias == "rack 4 uplink" && mine.promiscuity == 1)
            // Rename (while up), promisc off, alias removed.
            let renamed = t.ifname("ren")
            try s.manager.change(name: s.link, LinkChange(promisc: false, alias: "", newName: renamed))
            #expect(try run(["ip", "-n", s.ns, "link", "show", s.link], check: false).status != 0)
            l = try ipLink(renamed, ns: s.ns)
            #expect(l["ifalias"] == nil && (l["flags"] as? [String])?.contains("PROMISC") == false)
            #expect(try s.manager.link(named: renamed)?.tapDevice != nil)   // the char device follows the link
            // Renaming onto an existing name is explained.
            let e = #expect(throws: NetlinkError.self) { try s.manager.change(name: renamed, LinkChange(newName: s.lower)) }
            #expect(e?.errno == EEXIST && e?.description.contains("rename to '\(s.lower)'") == true)
            // Bounds checked before the kernel.
            let long = #expect(throws: NetlinkError.self) {
                try s.manager.change(name: renamed, LinkChange(alias: String(repeating: "x", count: 256)))
            }
            #expect(long?.description.contains("at most 255") == true)
        }
    }

    @Test func statisticsAgreeWithIpDashS() throws {
        try withTopology { t in
            let s = try setUp(t, kind: .macvlan)
            // The veth peer in a second namespace: a host on the wire the macvlan's lower device reaches.
            let far = try t.addNamespace("lpf")
            try run(["ip", "-n", s.ns, "link", "set", s.peer, "netns", far])
            try run(["ip", "-n", s.ns, "addr", "add", "198.18.7.1/24", "dev", s.link])
            try run(["ip", "-n", far, "addr", "add", "198.18.7.2/24", "dev", s.peer])
            for dev in [s.lower, s.link] { try run(["ip", "-n", s.ns, "link", "set", dev, "up"]) }
            try run(["ip", "-n", far, "link", "set", s.peer, "up"])
            // Traffic so the counters are not all zero: through the macvlan to the far end.
            let ping = try t.exec(s.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.7.2"], check: false, timeout: 20)
            #expect(ping.succeeded, "\(ping)")
            // Counters may move between two reads (IPv6 noise): ip before <= ours <= ip after.
            for level in [1, 2] {
                let before = try ipStats(s.link, ns: s.ns, level: level)
                let shown = try json(try run([tapbridgeExecutable(), "-n", s.ns] + Array(repeating: "-s", count: level)
                                             + ["-j", "link", "show", s.link]).stdout) as! [[String: Any]]
                let after = try ipStats(s.link, ns: s.ns, level: level)
                let ours = (shown[0]["stats64"] as! [String: Any]).mapValues { ($0 as! [String: Any]).mapValues { ($0 as! NSNumber).intValue } }
                for direction in ["rx", "tx"] {
                    for (key, low) in before[direction]! {
                        let mine = try #require(ours[direction]?[key], "\(direction).\(key) missing at level \(level)")
                        #expect(low <= mine && mine <= after[direction]![key]!, "\(direction).\(key): \(low) <= \(mine) <= \(after[direction]![key]!)")
                    }
                }
                #expect(Set(ours["rx"]!.keys).isSuperset(of: before["rx"]!.keys))
            }
            #expect(try s.manager.link(named: s.link)!.statistics!.txPackets >= 3)
            // Text: ip's layout of headings.
            let text = try run([tapbridgeExecutable(), "link", "show", s.link, "-s", "-s", "--netns", s.ns]).stdout
            #expect(text.contains("RX:  bytes packets errors dropped  missed   mcast") && text.contains("TX errors: aborted"), "\(text)")
        }
    }

    @Test func showTypeAndGlobalNamespaceAsIpUsersTypeThem() throws {
        try withTopology { t in
            let s = try setUp(t)
            let exe = tapbridgeExecutable()
            func names(_ argv: [String]) throws -> Set<String> {
                let arr = try json(try run([exe] + argv).stdout) as! [[String: Any]]
                return Set(arr.map { $0["ifname"] as! String })
            }
            let viaIp = { (kind: String) throws -> Set<String> in
                let arr = try json(try run(["ip", "-n", s.ns, "-j", "link", "show", "type", kind]).stdout) as! [[String: Any]]
                return Set(arr.map { $0["ifname"] as! String })
            }
            #expect(try names(["-n", s.ns, "-j", "link", "show", "type", "macvtap"]) == viaIp("macvtap"))
            #expect(try names(["--netns", s.ns, "link", "show", "type", "veth", "--json"]) == viaIp("veth"))
            #expect(try names(["link", "-n", s.ns, "show", "--json", "type", "veth"]) == [s.lower, s.peer])
            // Every link subcommand takes the global form: set, then show by name with -d -j.
            try run([exe, "-n", s.ns, "link", "set", s.link, "type", "macvtap", "mode", "vepa", "txqueuelen", "99",
                     "alias", "set by the CLI", "promisc", "on"])
            let ours = try json(try run([exe, "-n", s.ns, "-d", "-j", "link", "show", s.link]).stdout) as! [[String: Any]]
            let theirs = try ipLink(s.link, ns: s.ns)
            for key in ["ifname", "ifindex", "txqlen", "ifalias", "mtu", "address", "link", "promiscuity"] {
                #expect(String(describing: ours[0][key]!) == String(describing: theirs[key]!), "\(key)")
            }
            #expect(infoData(ours[0])["mode"] as? String == "vepa" && infoData(theirs)["mode"] as? String == "vepa")
            // Global options before a subcommand that does not touch links: a usage error.
            let wrong = try run([exe, "-n", s.ns, "ports"], check: false)
            #expect(wrong.status == 2 && wrong.stderr.contains("applies to `tapbridge link ...`"), "\(wrong)")
            let noValue = try run([exe, "link", "set", s.link, "promisc", "maybe", "--netns", s.ns], check: false)
            #expect(noValue.status == 2 && noValue.stderr.contains("'promisc' needs on or off"), "\(noValue)")
            // --help teaches the new words, whatever the position (it used to be taken for a word).
            for (sub, word) in [("add", "nodst"), ("set", "txqueuelen"), ("show", "type KIND")] {
                let help = try run([exe, "link", sub, "--help"], check: false)
                #expect(help.status == 0 && help.stdout.contains(word), "\(sub): \(help)")
            }
            #expect(try run([exe, "link", "--help"]).stdout.contains("-n NS or --netns NS"))
        }
    }
}
