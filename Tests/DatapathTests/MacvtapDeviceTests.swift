// The Tap module against the real kernel: device lookup, queue flags, offload probing, errors.
import Foundation
import Testing
@testable import Tap
@testable import Datapath
import Frames
import CTapbridgeShim
import TestSupport

@Suite
struct MacvtapDeviceTests {
    @Test func opensQueuesWithVnetHeaderAndOffloads() throws {
        try withTopology { t in
            let h = try addHost(t, 1)
            let dev = try MacvtapDevice(name: h.macvtap)
            #expect(dev.major > 0)
            let q1 = try dev.openQueue(vnetHeaderSize: 12, offloads: .all)
            let q2 = try dev.openQueue(vnetHeaderSize: 12, offloads: .all)
            defer { q1.close(); q2.close() }
            let flags = try q1.flags()
            #expect(flags & Int32(IFF_VNET_HDR) != 0 && flags & Int32(IFF_NO_PI) != 0 && flags & Int32(IFF_TAP) != 0)
            var size: Int32 = 0
            #expect(tb_tun_get_vnet_hdr_size(q1.fd, &size) == 0 && size == 12)
            #expect(q1.offloads.contains([.checksum, .tso4, .tso6]))
            #expect(fcntl(q1.fd, F_GETFL) & O_NONBLOCK != 0)
            #expect(fcntl(q1.fd, F_GETFD) & FD_CLOEXEC != 0)
            try q2.setEnabled(false)
            try q2.setEnabled(true)
            // Plain frames: the vnet header goes away.
            let q3 = try dev.openQueue(vnetHeaderSize: 0)
            defer { q3.close() }
            #expect(try q3.flags() & Int32(IFF_VNET_HDR) == 0)
            // No private device node is left behind.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { $0.hasPrefix("tapbridge-node.") }
            #expect(leftovers.isEmpty)
        }
    }

    @Test func errorsNameTheInterfaceAndTheProblem() throws {
        try withTopology { t in
            let missing = t.ifname("nope")
            #expect {
                _ = try MacvtapDevice(name: missing)
            } throws: { e in
                "\(e)".contains(missing) && "\(e)".contains("no interface")
            }
            let h = try addHost(t, 1)
            #expect {
                _ = try MacvtapDevice(name: h.lower)
            } throws: { e in
                "\(e)".contains(h.lower) && "\(e)".contains("not a macvtap")
            }
            let dev = try MacvtapDevice(name: h.macvtap)
            #expect {
                _ = try dev.openQueue(vnetHeaderSize: 7)
            } throws: { e in
                "\(e)".contains("TUNSETVNETHDRSZ") && "\(e)".contains(h.macvtap)
            }
        }
    }

    @Test func deletedMacvtapAnswersENOLINK() throws {
        try withTopology { t in
            let h = try addHost(t, 1)
            let q = try MacvtapDevice(name: h.macvtap).openQueue()
            defer { q.close() }
            try run(["ip", "link", "del", h.macvtap])
            var f: Int32 = 0
            #expect(tb_tun_get_flags(q.fd, &f) == -ENOLINK)
        }
    }
}

@Suite
struct MacvtapInOtherNamespaceTests {
    /// A macvtap living in another namespace: its device numbers are read there, the engine
    /// (in the root namespace) opens it by number.
    @Test func engineForwardsThroughAMacvtapInAnotherNamespace() throws {
        try withTopology { t in
            let b = try addHost(t, 2)
            let sw = try t.addNamespace("sw")
            let ns = try t.addNamespace("h1")
            let inner = t.ifname("i1"), outer = t.ifname("o1"), mvt = t.ifname("m1")
            try run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
            try run(["ip", "link", "set", inner, "netns", ns])
            try run(["ip", "link", "set", outer, "netns", sw])
            try run(["ip", "-n", ns, "addr", "add", "198.18.0.1/24", "dev", inner])
            try run(["ip", "-n", ns, "link", "set", inner, "up"])
            try run(["ip", "-n", sw, "link", "set", outer, "up"])
            try run(["ip", "-n", sw, "link", "add", "link", outer, "name", mvt, "type", "macvtap", "mode", "passthru"])
            try run(["ip", "-n", sw, "link", "set", mvt, "up"])
            let dev = try t.exec(sw, ["sh", "-c", "cat /sys/class/net/\(mvt)/macvtap/tap*/dev"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt32($0) }
            #expect(dev.count == 2)
            #expect(throws: TapError.self) { _ = try MacvtapDevice(name: mvt) }   // not visible from here

            let engine = makeEngine()
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
            try bridge.attach(MacvtapPort(device: MacvtapDevice(name: mvt, major: dev[0], minor: dev[1])))
            try bridge.attach(MacvtapPort(name: b.macvtap))
            try engine.start()
            defer { engine.stop() }
            let a = Host(namespace: ns, address: "198.18.0.1", macvtap: mvt, lower: outer)
            #expect(try ping(a, b))
        }
    }
}
