// TrafficTests: frames really cross the daemon's bridge. Hosts in namespaces behind passthru
// macvtaps the daemon creates; oracles are ping, iperf3 (exact byte counts), `ip neigh` and the
// per-port counters the daemon logs when it stops.
import Foundation
import Testing
import TestSupport
@testable import Daemon

@Suite struct DaemonTraffic {
    @Test(arguments: [true, false])
    func twoHostsPingAndIperf(offloads: Bool) throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(offloads: offloads))
            #expect(h.ping(0, h.addresses[1]), "ping failed:\n\(d.log)")
            let neigh = try t.exec(h.namespaces[0], ["ip", "-j", "neigh", "show", h.addresses[1]]).stdout
            #expect(neigh.contains(h.macs[1]), "ARP did not resolve \(h.addresses[1]): \(neigh)")
            let (sent, received) = try iperf(h, from: 0, to: 1)
            #expect(sent > 0 && received == sent, "iperf3 sent \(sent) received \(received)")
            #expect(d.stop() == 0)
            let c = finalCounters(d.log)
            let a = try #require(c[h.macvtaps[0]], "no final counters:\n\(d.log)")
            let b = try #require(c[h.macvtaps[1]])
            #expect(a.int("rx-frames") > 0 && b.int("tx-frames") > 0)
            // A TCP sender's super-frames cross whole when offloads are on; never above the MTU without.
            if offloads {
                #expect(a.int("rx-largest") > 1514, "no frame above 1500 bytes crossed: \(a)")
            } else {
                #expect(a.int("rx-largest") <= 1514 && a.int("rx-largest") > 0, "\(a)")
            }
        }
    }

    @Test func learningFloodsFirstThenUnicasts() throws {
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

    @Test func fdbBoundHoldsUnderMACFlood() throws {
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
            #expect(ls.int("fdb-entries") <= 64 && ls.int("fdb-entries") > 0, "\(ls)")
            #expect(ls.int("fdb-evictions") > 1000, "\(ls)")
        }
    }

    @Test func vlanAccessAndTrunkKeepVLANsApart() throws {
        try withTopology { t in
            // h0 access 10 (198.18.10.1), h1 access 20 (198.18.20.1), h3 access 20 but in h0's
            // subnet (198.18.10.2), h2 trunk 10+20 with eth0.10 = .10.3 and eth0.20 = .20.3.
            let h = try Hosts(t, count: 4, ips: ["198.18.10.1", "198.18.20.1", "", "198.18.10.2"])
            let ns2 = h.namespaces[2]
            for v in ["10", "20"] {
                try t.exec(ns2, ["ip", "link", "add", "link", "eth0", "name", "eth0.\(v)", "type", "vlan", "id", v])
                try t.exec(ns2, ["ip", "addr", "add", "198.18.\(v).3/24", "dev", "eth0.\(v)"])
                try t.exec(ns2, ["ip", "link", "set", "eth0.\(v)", "up"])
            }
            let config = "[[bridges]]\n" + h.portTables(extra: [
                0: "vlan = \"access\"\npvid = 10", 1: "vlan = \"access\"\npvid = 20",
                2: "vlan = \"trunk\"\nallowed = [10, 20]", 3: "pvid = 20"])
            let d = try DaemonProcess(t, config: config)
            #expect(h.ping(0, "198.18.10.3"), "access 10 -> trunk VLAN 10 failed:\n\(d.log)")
            #expect(h.ping(1, "198.18.20.3"), "access 20 -> trunk VLAN 20 failed")
            #expect(!h.ping(0, "198.18.10.2", count: 2), "VLAN 10 reached a host in VLAN 20")
            #expect(!h.ping(3, "198.18.10.3", count: 2), "VLAN 20 host reached the trunk's VLAN 10 address")
            #expect(d.stop() == 0)
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
    try inNamespace(netns) {
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
