// The founding article's experiment and the macvlan mode matrix, verified by traffic between
// namespaces (addresses in 198.18.0.0/24). docs/modes.md records what these tests show.
import Foundation
import Testing
import Frames
@testable import Netlink
import TestSupport

/// Two macvlan sub-interfaces of one lower device (a veth whose peer is `outside`), moved into
/// two namespaces with 198.18.0.1/24 and .2; returns the namespaces.
func siblings(_ t: Topology, mode: MacvlanMode, lowerSetup: (String, String) throws -> Void = { _, _ in }) throws
    -> (ns1: String, ns2: String, lower: String) {
    let lower = t.ifname("low"), outside = t.ifname("out")
    try t.addVeth(lower, outside)
    try lowerSetup(lower, outside)
    try run(["ip", "link", "set", lower, "up"])
    try run(["ip", "link", "set", outside, "up"])
    let ns1 = try t.addNamespace("n1"), ns2 = try t.addNamespace("n2")
    let m = try LinkManager()
    for (i, ns) in [ns1, ns2].enumerated() {
        let name = t.ifname("mv\(i + 1)")
        try m.create(LinkSpec(kind: .macvlan, parent: lower, name: name, mode: mode, namespace: .named(ns)))
        try run(["ip", "-n", ns, "addr", "add", "198.18.0.\(i + 1)/24", "dev", name])
        try run(["ip", "-n", ns, "link", "set", name, "up"])
    }
    return (ns1, ns2, lower)
}

func pings(_ t: Topology, from ns: String, to addr: String) throws -> Bool {
    try t.exec(ns, ["ping", "-c", "2", "-i", "0.2", "-W", "1", addr], check: false, timeout: 10).succeeded
}

@Suite(.serialized) struct ModeMatrixTests {
    @Test func articleExperimentBridgeModeSiblingsPing() throws {
        try withTopology { t in
            let (ns1, ns2, _) = try siblings(t, mode: .bridge)
            #expect(try pings(t, from: ns1, to: "198.18.0.2"))
            #expect(try pings(t, from: ns2, to: "198.18.0.1"))
        }
    }

    @Test func articleExperimentThroughTheCLI() throws {
        try withTopology { t in
            let exe = tapbridgeExecutable()
            let lower = t.ifname("low"), outside = t.ifname("out")
            try t.addVeth(lower, outside)
            // The lower device needs carrier: both veth ends up.
            try run(["ip", "link", "set", lower, "up"])
            try run(["ip", "link", "set", outside, "up"])
            let ns1 = try t.addNamespace("c1"), ns2 = try t.addNamespace("c2")
            for (i, ns) in [ns1, ns2].enumerated() {
                let name = t.ifname("cv\(i + 1)")
                try run([exe, "link", "add", "link", lower, "name", name, "type", "macvlan", "mode", "bridge", "netns", ns])
                try run(["ip", "-n", ns, "addr", "add", "198.18.0.\(i + 1)/24", "dev", name])
                try run([exe, "link", "set", name, "up", "--netns", ns])
            }
            #expect(try pings(t, from: ns1, to: "198.18.0.2"))
            let shown = try json(try run([exe, "link", "show", "--netns", ns1, "--json"]).stdout) as! [[String: Any]]
            #expect(shown.count == 1 && (shown[0]["linkinfo"] as? [String: Any])?["info_kind"] as? String == "macvlan")
        }
    }

    @Test(arguments: [MacvlanMode.private, .vepa])
    func privateAndVepaSiblingsDoNotTalkDirectly(mode: MacvlanMode) throws {
        try withTopology { t in
            let (ns1, _, _) = try siblings(t, mode: mode)
            #expect(try !pings(t, from: ns1, to: "198.18.0.2"))
        }
    }

    /// The lower device's peer is a port of an in-kernel bridge with `hairpin on`: an 802.1Qbg
    /// reflective relay. VEPA siblings then talk; private siblings still never do.
    @Test(arguments: [(MacvlanMode.vepa, true), (MacvlanMode.private, false)])
    func hairpinningExternalSwitch(mode: MacvlanMode, talks: Bool) throws {
        try withTopology { t in
            let br = t.ifname("br")
            let (ns1, _, _) = try siblings(t, mode: mode) { _, outside in
                try run(["ip", "link", "add", br, "type", "bridge"])
                t.track(link: br)
                try run(["ip", "link", "set", outside, "master", br])
                try run(["ip", "link", "set", "dev", outside, "type", "bridge_slave", "hairpin", "on"])
                try run(["ip", "link", "set", br, "up"])
            }
            #expect(try pings(t, from: ns1, to: "198.18.0.2") == talks)
        }
    }

    @Test func passthruOwnsTheLowerDevice() throws {
        try withTopology { t in
            let lower = t.ifname("p0"), peer = t.ifname("p1"), a = t.ifname("pt"), b = t.ifname("pu")
            try t.addVeth(lower, peer)
            let m = try LinkManager()
            let promiscBefore = try #require(try m.link(named: lower)?.promiscuity)
            try m.create(LinkSpec(kind: .macvlan, parent: lower, name: a, mode: .passthru, up: true)); t.track(link: a)
            try run(["ip", "link", "set", lower, "up"])
            #expect(try m.link(named: lower)!.promiscuity! > promiscBefore)
            do {
                try m.create(LinkSpec(kind: .macvlan, parent: lower, name: b, mode: .passthru))
                Issue.record("a second passthru sub-interface was accepted")
            } catch {
                #expect("\(error)".contains("mode 'passthru' allows one sub-interface per lower device"))
            }
            try m.delete(name: a)
            // nopromisc: the lower device's promiscuity is left alone.
            try m.create(LinkSpec(kind: .macvlan, parent: lower, name: a, mode: .passthru, noPromisc: true, up: true))
            #expect(try m.link(named: lower)!.promiscuity == promiscBefore)
        }
    }

    /// Source mode: only frames whose source MAC is on the list reach the sub-interface. The
    /// sender sits behind the lower device's veth peer, in its own namespace.
    @Test func sourceModeAcceptsListedMACsOnly() throws {
        try withTopology { t in
            let lower = t.ifname("s0"), outside = t.ifname("s1"), src = t.ifname("sm")
            try t.addVeth(lower, outside)
            try run(["ip", "link", "set", lower, "up"])
            let nsA = try t.addNamespace("sa"), nsB = try t.addNamespace("sb")
            try t.move(outside, to: nsA, address: "198.18.0.1/24")
            let senderMAC = try #require(try LinkManager(namespace: .named(nsA)).link(named: outside)?.address)
            let m = try LinkManager()
            try m.create(LinkSpec(kind: .macvlan, parent: lower, name: src, mode: .source, namespace: .named(nsB)))
            try run(["ip", "-n", nsB, "addr", "add", "198.18.0.2/24", "dev", src])
            try run(["ip", "-n", nsB, "link", "set", src, "up"])
            let inB = try LinkManager(namespace: .named(nsB))
            #expect(try !pings(t, from: nsA, to: "198.18.0.2"))
            try inB.sourceMACs(name: src, .add([senderMAC, MACAddress("52:54:00:00:00:77")!]))
            #expect(try inB.link(named: src)?.sourceMACs.sorted() == [senderMAC, MACAddress("52:54:00:00:00:77")!].sorted())
            #expect(try pings(t, from: nsA, to: "198.18.0.2"))
            try inB.sourceMACs(name: src, .delete([senderMAC]))
            #expect(try inB.link(named: src)?.sourceMACs == [MACAddress("52:54:00:00:00:77")!])
            try inB.sourceMACs(name: src, .set([senderMAC]))
            #expect(try inB.link(named: src)?.sourceMACs == [senderMAC])
            try inB.sourceMACs(name: src, .flush)
            #expect(try inB.link(named: src)?.sourceMACs == [])
            #expect(try !pings(t, from: nsA, to: "198.18.0.2"))
        }
    }
}

@Suite(.serialized) struct LinkMonitorTests {
    @Test func eventsArriveInOrder() throws {
        try withTopology { t in
            let ns = try t.addNamespace("mon")
            let monitor = try LinkMonitor(namespace: .named(ns))
            let a = t.ifname("ma0"), b = t.ifname("ma1")
            try t.exec(ns, ["ip", "link", "add", a, "type", "veth", "peer", "name", b])
            try t.exec(ns, ["ip", "link", "set", a, "up"])
            try t.exec(ns, ["ip", "link", "del", a])
            var seen: [String] = []
            while let e = try monitor.next(timeout: 2) {
                guard let name = e.link?.name, name == a else { continue }
                if seen.last != e.name { seen.append(e.name) }
                if e.name == "removed" { break }
            }
            // "changed" may come between (carrier, peer state), and deleting an up link first
            // reports it down; the order of the rest is fixed.
            let order = seen.filter { $0 != "changed" }
            #expect(order == ["added", "up", "down", "removed"] || order == ["added", "up", "removed"], "\(seen)")
        }
    }

    @Test func cliMonitorPrintsOneLinePerEvent() throws {
        try withTopology { t in
            let ns = try t.addNamespace("cm")
            let out = "/tmp/\(t.tag)-monitor.txt"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [tapbridgeExecutable(), "link", "monitor", "--json", "--netns", ns]
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            try p.run()
            t.onCleanup { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); try? FileManager.default.removeItem(atPath: out) }
            usleep(500_000)
            let a = t.ifname("cm0"), b = t.ifname("cm1")
            try t.exec(ns, ["ip", "link", "add", a, "type", "veth", "peer", "name", b])
            try t.exec(ns, ["ip", "link", "del", a])
            usleep(500_000)
            // SIGTERM ends it (the monitor unblocks it even if spawned with it blocked).
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal)
            let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
            let events = try lines.map { try json(String($0)) as! [String: Any] }.filter { $0["ifname"] as? String == a }
            #expect(events.first?["event"] as? String == "added")
            #expect(events.last?["event"] as? String == "removed")
        }
    }
}
