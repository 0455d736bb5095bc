// Round trips against iproute2: what tapbridge creates, `ip -d -j link` reads back the same,
// and what `ip` creates, tapbridge decodes the same.
import Foundation
import Testing
import Frames
@testable import Netlink
import TestSupport

/// `ip -d -j link show NAME` (in `ns` if given) as a dictionary.
func ipLink(_ name: String, ns: String? = nil) throws -> [String: Any] {
    let argv = (ns.map { ["ip", "-n", $0] } ?? ["ip"]) + ["-d", "-j", "link", "show", name]
    let arr = try json(try run(argv).stdout) as! [[String: Any]]
    return arr[0]
}

func infoData(_ l: [String: Any]) -> [String: Any] {
    ((l["linkinfo"] as? [String: Any])?["info_data"] as? [String: Any]) ?? [:]
}

@Suite(.serialized) struct LinkRoundTripTests {
    @Test func createdByTapbridgeReadByIp() throws {
        try withTopology { t in
            let lower = t.ifname("lo0"), peer = t.ifname("lo1"), tap = t.ifname("mvt")
            try t.addVeth(lower, peer)
            let m = try LinkManager()
            let mac = MACAddress("52:54:00:12:34:56")!
            let created = try m.create(LinkSpec(kind: .macvtap, parent: lower, name: tap, mode: .bridge,
                                                address: mac, mtu: 1400, txQueues: 2, rxQueues: 2,
                                                broadcastQueueLength: 500, up: true))
            t.track(link: tap)
            let l = try ipLink(tap)
            #expect(l["ifname"] as? String == tap)
            #expect(l["address"] as? String == mac.description)
            #expect(l["mtu"] as? Int == 1400)
            #expect(l["link"] as? String == lower)
            #expect(l["num_tx_queues"] as? Int == 2 && l["num_rx_queues"] as? Int == 2)
            #expect((l["flags"] as? [String])?.contains("UP") == true)
            #expect((l["linkinfo"] as? [String: Any])?["info_kind"] as? String == "macvtap")
            #expect(infoData(l)["mode"] as? String == "bridge")
            #expect(infoData(l)["bcqueuelen"] as? Int == 500)
            // And tapbridge's own reading agrees.
            #expect(created.name == tap && created.kind == "macvtap" && created.mode == .bridge)
            #expect(created.address == mac && created.mtu == 1400 && created.parentName == lower)
            #expect(created.txQueues == 2 && created.rxQueues == 2 && created.isUp)
            #expect(created.broadcastQueueLength == 500)
            let dev = try #require(created.tapDevice)
            let sysfs = try String(contentsOfFile: "/sys/class/net/\(tap)/macvtap/tap\(created.index)/dev", encoding: .utf8)
            #expect(dev.description == sysfs.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    @Test(arguments: MacvlanMode.allCases)
    func everyModeRoundTrips(mode: MacvlanMode) throws {
        try withTopology { t in
            let lower = t.ifname("l0"), peer = t.ifname("l1"), vtap = t.ifname("m")
            try t.addVeth(lower, peer)
            let m = try LinkManager()
            try m.create(LinkSpec(kind: .macvlan, parent: lower, name: vtap, mode: mode, noPromisc: mode == .passthru))
            t.track(link: vtap)
            let l = try ipLink(vtap)
            #expect(infoData(l)["mode"] as? String == mode.rawValue)
            if mode == .passthru { #expect(infoData(l)["nopromisc"] as? Bool == true) }
            let back = try #require(try m.link(named: vtap))
            #expect(back.mode == mode && back.kind == "macvlan" && back.noPromisc == (mode == .passthru))
        }
    }

    @Test func createdByIpReadByTapbridge() throws {
        try withTopology { t in
            let lower = t.ifname("a0"), peer = t.ifname("a1"), tap = t.ifname("ipt")
            try t.addVeth(lower, peer)
            try run(["ip", "link", "add", "link", lower, "name", tap, "address", "52:54:00:aa:bb:cc", "mtu", "1300",
                     "numtxqueues", "3", "numrxqueues", "3", "type", "macvtap", "mode", "private"])
            t.track(link: tap)
            let l = try ipLink(tap)
            let mine = try #require(try LinkManager().link(named: tap))
            #expect(mine.index == l["ifindex"] as? Int32 ?? Int32(l["ifindex"] as! Int))
            #expect(mine.address?.description == l["address"] as? String)
            #expect(Int(mine.mtu) == l["mtu"] as? Int)
            #expect(mine.parentName == l["link"] as? String)
            #expect(mine.mode?.rawValue == infoData(l)["mode"] as? String)
            #expect(Int(mine.txQueues ?? 0) == l["num_tx_queues"] as? Int)
            #expect(mine.operState == l["operstate"] as? String)
            #expect(mine.tapDevice != nil)
        }
    }

    @Test func setChangesStateAddressAndMTU() throws {
        try withTopology { t in
            let lower = t.ifname("s0"), peer = t.ifname("s1"), tap = t.ifname("st")
            try t.addVeth(lower, peer)
            let m = try LinkManager()
            try m.create(LinkSpec(kind: .macvtap, parent: lower, name: tap, mode: .bridge))
            t.track(link: tap)
            try m.set(name: tap, up: true, address: MACAddress("52:54:00:00:00:99"), mtu: 1280)
            let l = try ipLink(tap)
            #expect(l["address"] as? String == "52:54:00:00:00:99" && l["mtu"] as? Int == 1280)
            #expect((l["flags"] as? [String])?.contains("UP") == true)
            try m.set(name: tap, up: false)
            #expect(try m.link(named: tap)?.isUp == false)
            try m.delete(name: tap)
            #expect(try m.link(named: tap) == nil)
            #expect(try run(["ip", "link", "show", tap], check: false).status != 0)
        }
    }

    @Test func kernelChosenNameAndNamespaces() throws {
        try withTopology { t in
            let lower = t.ifname("k0"), peer = t.ifname("k1")
            try t.addVeth(lower, peer)
            let ns = try t.addNamespace("kns")
            let m = try LinkManager()
            // Created directly in the namespace, with a kernel-chosen name.
            let l = try m.create(LinkSpec(kind: .macvtap, parent: lower, mode: .bridge, up: true, namespace: .named(ns)))
            #expect(l.name.hasPrefix("macvtap"))
            let inside = try LinkManager(namespace: .named(ns))
            let seen = try #require(try inside.link(named: l.name))
            #expect(seen.kind == "macvtap" && seen.parentInOtherNamespace)
            // sysfs from inside the namespace gives the char device.
            let viaIp = try t.exec(ns, ["cat", "/sys/class/net/\(l.name)/macvtap/tap\(seen.index)/dev"]).stdout
            #expect(seen.tapDevice?.description == viaIp.trimmingCharacters(in: .whitespacesAndNewlines))
            // Move back to this namespace by name-based set, then delete.
            try inside.set(name: l.name, namespace: .pid(getpid()))
            #expect(try m.link(named: l.name) != nil)
            try m.delete(name: l.name)
        }
    }
}
