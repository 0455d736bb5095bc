// TrafficTests: frames really cross the daemon's bridge. Hosts in namespaces behind passthru
// macvtaps the daemon creates; oracles are ping, iperf3 (exact byte counts), `ip neigh` and the
// per-port counters the daemon logs when it stops.
import Foundation
import Testing
import TestSupport
@testable import Daemon
import Netlink

@Suite struct DaemonTraffic {
    @Test(arguments: [true, false])
    func twoHostsPingAndIperf(offloads: Bool) throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(offloads: offloads))
            #expect(h.ping(0, h.addresses[1]), "ping failed:\n\(d.log)")
            let neigh = try t.exec(h.namespaces[0], ["ip", "-j", "neigh", "show", h.addresses[1]]).stdout
            #expect(neigh.contains(h.macs[1]), "ARP did not resolve \(h.addresses[1]): \(neigh)")
            // iperf3 stops counting at its end-of-test message, when bytes being retransmitted
            // may still be in flight: its totals agree to within the socket buffers (a few MiB).
            let (sent, received) = try iperf(h, from: 0, to: 1)
            #expect(sent > 0 && received >= sent - (16 << 20) && received <= sent, "iperf3 sent \(sent) received \(received)")
            // Exact delivery: every byte of a 64 MiB TCP transfer arrives.
            let n = 64 << 20
            #expect(try tcpTransfer(client: h.namespaces[0], server: h.namespaces[1], address: h.addresses[1], bytes: n) == n)
            #expect(d.stop() == 0)
            let c = finalCounters(d.log)
            let a = try #require(c[h.macvtaps[0]], "no final counters:\n\(d.log)")
            let b = try #require(c[h.macvtaps[1]])
            #expect(a.int("rx-frames") > 0 && b.int("tx-frames") > 0)
            // A TCP sender's super-frames cross whole when offloads are on; never above the MTU without.
            if offloads {
                #expect(a.int("rx-large") > 0 && b.int("tx-large") > 0 && a.int("rx-largest") > 1514,
                        "no frame above 1500 bytes crossed: \(a)")
            } else {
                #expect(a.int("rx-large") == 0 && b.int("tx-large") == 0, "\(a)")
            }
        }
    }

    @Test func mixedOffloadPortsStillDeliverEveryByte() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let config = "[[bridges]]\n" + h.portTables(extra: [1: "offloads = false"]).replacingOccurrences(
                of: "offloads = true\noffloads = false", with: "offloads = false")
            let d = try DaemonProcess(t, config: config, arguments: ["--workers", "1"])
            #expect(d.log.contains("datapath: 1 worker(s)"), "\(d.log)")
            let n = 32 << 20
            #expect(try tcpTransfer(client: h.namespaces[0], server: h.namespaces[1], address: h.addresses[1], bytes: n) == n,
                    "\(d.log)")
            #expect(d.stop() == 0)
            // Whether the core segments or negotiates GSO down, nothing large reaches the plain port.
            #expect(finalCounters(d.log)[h.macvtaps[1]]?.int("tx-large") == 0)
        }
    }

    @Test
    func learningFloodsFirstThenUnicasts() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1], count: 20))
            #expect(d.stop() == 0)
            let c = finalCounters(d.log)
            let to1 = try #require(c[h.macvtaps[1]], "\(d.log)")
            let to2 = try #require(c[h.macvtaps[2]])
            // Port 2 only saw the flooded first frame (the ARP request); port 1 got all 20 requests.
            #expect(to1.int("tx-frames") >= 21)
            #expect((1...3).contains(to2.int("tx-frames")), "host 2's port got \(to2.int("tx-frames")) frames")
        }
    }

    @Test
    func learnedEntriesAgeOut() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\n[bridges.learning-switch]\naging = 1\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1], count: 1))
            usleep(3_500_000)   // aging 1 s; the daemon sweeps every second
            #expect(d.stop() == 0)
            let ls = try #require(finalCounters(d.log)["handler:learning-switch"], "\(d.log)")
            #expect(ls.int("fdb_entries") == 0 && ls.int("fdb_aged") >= 2, "\(ls)")
        }
    }

    @Test
    func fdbBoundHoldsUnderMACFlood() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let config = """
                stats-interval = 1
                [[bridges]]
                [bridges.learning-switch]
                capacity = 64
                """ + "\n" + h.portTables()
            let d = try DaemonProcess(t, config: config)
            // 5000 frames with random source MACs from host 2, while hosts 0 and 1 keep talking.
            let flood = Thread { try? sendRandomSourceFrames(netns: h.namespaces[2], ifname: "eth0", count: 5000) }
            flood.start()
            #expect(h.ping(0, h.addresses[1], count: 10))
            while flood.isExecuting { usleep(50_000) }
            #expect(h.ping(0, h.addresses[1], count: 3))
            #expect(d.stop() == 0)
            let c = finalCounters(d.log)
            let ls = try #require(c["handler:learning-switch"], "no learning-switch counters:\n\(d.log)")
            #expect(ls.int("fdb_entries") <= 64 && ls.int("fdb_entries") > 0, "\(ls)")
            #expect(ls.int("fdb_evicted") > 1000, "\(ls)")
        }
    }

    @Test
    func vlanAccessAndTrunkKeepVLANsApart() throws {
        try withTopology { t in
            // One subnet, two VLANs: h0 and h3 access VLAN 10, h1 access VLAN 20, h2 a trunk
            // carrying both (this kernel has no 802.1Q devices, so the trunk host only listens).
            let h = try Hosts(t, count: 4, ips: ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"])
            let config = "[[bridges]]\n" + h.portTables(extra: [
                0: "vlan = \"access\"\npvid = 10", 1: "pvid = 20",
                2: "vlan = \"trunk\"\nallowed = [10, 20]", 3: "pvid = 10"])
            let d = try DaemonProcess(t, config: config)
            let trunk = Capture(h.namespaces[2]), access10 = Capture(h.namespaces[3])
            #expect(h.ping(0, h.addresses[3]), "access VLAN 10 -> access VLAN 10 failed:\n\(d.log)")
            #expect(!h.ping(1, h.addresses[0], count: 2), "VLAN 20 reached a host in VLAN 10")
            let onTrunk = trunk.finish(), onAccess10 = access10.finish()
            // The trunk sees both VLANs' ARP requests, tagged; the VLAN 10 access host only its own VLAN's, untagged.
            #expect(onTrunk.contains { $0.contains("vlan 10") && $0.contains("tell 198.18.0.1") }, "\(onTrunk)")
            #expect(onTrunk.contains { $0.contains("vlan 20") && $0.contains("tell 198.18.0.2") }, "\(onTrunk)")
            #expect(onAccess10.contains { $0.contains("tell 198.18.0.1") && !$0.contains("vlan") }, "\(onAccess10)")
            #expect(!onAccess10.contains { $0.contains("tell 198.18.0.2") }, "VLAN 20 ARP leaked to VLAN 10: \(onAccess10)")
            #expect(d.stop() == 0)
        }
    }

    @Test
    func isolatedPortsOnlyReachOthers() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(extra: [0: "isolated = true", 1: "isolated = true"]))
            #expect(h.ping(0, h.addresses[2]), "isolated -> open port failed:\n\(d.log)")
            #expect(h.ping(1, h.addresses[2]))
            #expect(!h.ping(0, h.addresses[1], count: 2), "two isolated ports talked")
            #expect(d.stop() == 0)
        }
    }

    /// A filter in front of the switch: ICMP denied (and counted), other traffic passes; SIGHUP
    /// swaps the rules live and the old set stays if the new one does not compile.
    @Test func filterDeniesThenLiveSwapAllows() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            func config(_ rules: String) -> String {
                "[[bridges]]\npipeline = [\"filter\", \"learning-switch\"]\n[bridges.filter]\nrules = [\(rules)]\n" + h.portTables()
            }
            let d = try DaemonProcess(t, config: config("\"count arp\", \"deny icmp\""))
            #expect(!h.ping(0, h.addresses[1], count: 2), "ICMP crossed a filter that denies it:\n\(d.log)")
            // ARP got through (the neighbour resolved) while ICMP was denied.
            let neigh = try t.exec(h.namespaces[0], ["ip", "-j", "neigh", "show", h.addresses[1]]).stdout
            #expect(neigh.contains(h.macs[1]), "ARP did not cross: \(neigh)")
            // A rule set that does not compile is refused with the file (it names the rule); the old one stays.
            try config("\"deny icmpp\"").write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("reload refused: configuration invalid")
            #expect(d.log.contains("bridges[0].filter.rules[0]"), "\(d.log)")
            #expect(!h.ping(0, h.addresses[1], count: 1))
            try config("\"count icmp\"").write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("filter rules replaced")
            #expect(h.ping(0, h.addresses[1]), "ping failed after the live swap:\n\(d.log)")
            #expect(d.stop() == 0)
            #expect(d.log.contains("filter_rule_packets"), "no filter counters in the final log")
        }
    }

    @Test func thirdHostAddedWhileRunning() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + Hosts.portTables(h, only: [0, 1]))
            #expect(h.ping(0, h.addresses[1]))
            #expect(!h.ping(0, h.addresses[2], count: 1))
            try ("[[bridges]]\n" + h.portTables()).write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("info reloaded")
            #expect(h.ping(0, h.addresses[2]), "the added host is not reachable:\n\(d.log)")
            #expect(h.ping(2, h.addresses[1]))
            #expect(d.stop() == 0)
        }
    }

    @Test func othersKeepForwardingWhenAPortLinkIsDeleted() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables())
            #expect(h.ping(0, h.addresses[2]))
            try run(["ip", "link", "del", h.macvtaps[2]])
            try d.waitFor("port lost")
            #expect(h.ping(0, h.addresses[1]), "forwarding stopped after a port's link was deleted:\n\(d.log)")
            #expect(d.stop() == 0)
        }
    }

    @Test func linkThatComesBackIsReattached() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1]))
            try run(["ip", "link", "del", h.macvtaps[1]])
            try d.waitFor("port lost")
            #expect(!h.ping(0, h.addresses[1], count: 1))
            // Someone recreates it (same name, same parent): the daemon picks it up again.
            try run(["ip", "link", "add", "link", h.veths[1], "name", h.macvtaps[1], "type", "macvtap", "mode", "passthru"])
            t.track(link: h.macvtaps[1])
            try run(["ip", "link", "set", h.macvtaps[1], "up"])
            try d.waitFor("port re-attached")
            #expect(h.ping(0, h.addresses[1]), "no forwarding after re-attach:\n\(d.log)")
            #expect(d.stop() == 0)
            // It was not created by the daemon this time, so the daemon leaves it.
            #expect(linkDetails(h.macvtaps[1]) != nil)
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }

    @Test func demoStopsAndCleansUpOnSIGTERM() throws {
        try withTopology { t in
            let prefix = t.tag
            t.onCleanup {
                for x in ["a", "b"] { _ = try? run(["ip", "netns", "del", "\(prefix)-\(x)"], check: false) }
            }
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-demo.out").path
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            defer { try? FileManager.default.removeItem(atPath: out) }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tapbridgeExecutable())
            p.arguments = ["demo", "--prefix", prefix, "--interval", "1"]
            p.standardOutput = FileHandle(forWritingAtPath: out)
            p.standardError = FileHandle.nullDevice
            try p.run()
            t.onCleanup { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
            let text = { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
            let deadline = Date().addingTimeInterval(20)
            while !text().contains("Ctrl-C stops") && Date() < deadline && p.isRunning { usleep(50_000) }
            #expect(FileManager.default.fileExists(atPath: "/run/netns/\(prefix)-a"))
            #expect(try run(["ip", "netns", "exec", "\(prefix)-a", "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.0.2"], check: false).succeeded)
            usleep(1_200_000)   // at least one line of live counters
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(text())")
            #expect(text().contains("rx "), "no live counters: \(text())")
            #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(prefix)-a"))
            #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(prefix)-b"))
            for l in ["a-veth", "b-veth", "a-tap", "b-tap"] { #expect(linkDetails("\(prefix)-\(l)") == nil) }
        }
    }

    @Test func demoSelfTestPasses() throws {
        try withTopology { t in
            let prefix = t.tag
            t.onCleanup {
                for x in ["a", "b", "c"] { _ = try? run(["ip", "netns", "del", "\(prefix)-\(x)"], check: false) }
            }
            let r = try run([tapbridgeExecutable(), "demo", "--self-test", "--duration", "60", "--hosts", "3",
                             "--prefix", prefix, "--interval", "0"], check: false, timeout: 90)
            #expect(r.status == 0, "demo failed:\n\(r.stdout)\n\(r.stderr)")
            #expect(r.stdout.contains("self-test PASS"))
            #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(prefix)-a"), "the demo left a namespace behind")
            #expect(linkDetails("\(prefix)-a-veth") == nil && linkDetails("\(prefix)-a-tap") == nil)
        }
    }
}

/// Sends `count` broadcast frames with random locally administered source MACs out of `ifname`
/// in namespace `netns` (AF_PACKET), paced so the whole flood takes about a second.
func sendRandomSourceFrames(netns: String, ifname: String, count: Int) throws {
    try NetworkNamespace.named(netns).run {
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket(AF_PACKET): errno \(errno)") }
        defer { close(fd) }
        // struct sockaddr_ll (not in Glibc's module): family, protocol, ifindex, hatype, pkttype, halen, addr[8].
        var addr = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { addr.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: Int32(if_nametoindex(ifname))) { addr.replaceSubrange(4..<8, with: $0) }
        addr[11] = 6
        var frame = [UInt8](repeating: 0, count: 60)
        for i in 0..<6 { frame[i] = 0xFF }
        frame[12] = 0x88; frame[13] = 0xB5   // local experimental EtherType
        for n in 0..<count {
            frame[6] = 0x02
            for i in 7..<12 { frame[i] = UInt8.random(in: 0...255) }
            _ = addr.withUnsafeBytes { ab in
                sendto(fd, frame, frame.count, 0, ab.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(ab.count))
            }
            if n % 100 == 99 { usleep(20_000) }
        }
    }
}

/// tcpdump on eth0 of a namespace for `seconds`, writing packet by packet to a file (the test
/// runner's children inherit blocked SIGINT/SIGTERM, so the capture ends by SIGKILL).
final class Capture: @unchecked Sendable {
    private let process = Process()
    private let file: String

    init(_ ns: String, seconds: Int = 5) {
        file = FileManager.default.temporaryDirectory.appendingPathComponent("cap-\(ns)-\(UInt32.random(in: 0...UInt32.max)).pcap").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", ns, "timeout", "-s", "KILL", "\(seconds)",
                             "tcpdump", "-U", "-n", "-i", "eth0", "-w", file]
        let errFile = file + ".err"
        _ = FileManager.default.createFile(atPath: errFile, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: errFile)
        try? process.run()
        // Wait until tcpdump says it is listening (at most 3 s).
        for _ in 0..<60 {
            if let e = try? String(contentsOfFile: errFile, encoding: .utf8), e.contains("listening on") { break }
            usleep(50_000)
        }
        try? FileManager.default.removeItem(atPath: errFile)
    }

    /// Waits for the capture to end and returns its packets as `tcpdump -n -e` lines.
    func finish() -> [String] {
        process.waitUntilExit()
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try? run(["tcpdump", "-n", "-e", "-r", file], check: false)
        return (r?.stdout ?? "").split(separator: "\n").map(String.init)
    }
}
