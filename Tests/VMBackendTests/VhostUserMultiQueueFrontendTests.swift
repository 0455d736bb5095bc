// Multi-queue vhost-user ports against front-ends we did not write: DPDK testpmd's virtio-user
// with two queue pairs (its own control queue turns `--rxq=2 --txq=2` into SET_VRING_ENABLE of
// both pairs) sending txonly frames through the learning switch and a macvtap to a namespace
// host, both pairs carrying them (one per worker); and a QEMU guest with `queues=2` / `mq=on`
// whose driver starts with one pair (one vCPU) and takes the second with `ethtool -L` (QEMU
// turns the driver's VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET into SET_VRING_ENABLE), pinging the host
// before and after; QEMU restarted, the port serves the new guest. Need root, dpdk-testpmd /
// qemu and the tools/build-guest guest.
import Datapath
import Foundation
import Frames
import Handlers
import Testing
import TestSupport
import VhostUser
@testable import VMBackend

/// The veth end inside `lan`'s namespace (LAN names it "li").
func lanInner(_ t: Topology) -> String { t.ifname("li") }

func rxPackets(_ t: Topology, _ ns: String, _ link: String) -> Int {
    Int((try? t.exec(ns, ["cat", "/sys/class/net/\(link)/statistics/rx_packets"]))?.stdout
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
}

@Suite(.serialized, .enabled(if: getuid() == 0 && Testpmd.available, "needs root and dpdk-testpmd"))
struct VhostUserMultiQueueTestpmdTests {
    @Test func testpmdTwoPairsTxonlyThroughSwitchToNamespaceHost() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: ["52:54:00:12:34:60"])
            let hostMAC = try t.exec(lan.namespace, ["cat", "/sys/class/net/\(lanInner(t))/address"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let dir = try vhostTempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let logs = Lines()
            var c = EngineConfiguration(workers: 2)
            c.buffersPerWorker = 256
            c.log = { l, s in logs.add("\(l): \(s)") }
            let engine = Engine(configuration: c)
            let bridge = engine.addBridge(name: "mqbr", pipeline: HandlerPipeline([LearningSwitch()]))
            let macvtapID = try bridge.attach(MacvtapPort(name: lan.macvtap))
            let port = VhostUserPort(name: "pmd0", path: dir + "/pmd0.sock", queuePairs: 2, log: { logs.add($0) })
            let id = try bridge.attach(port)
            try engine.start()
            defer { port.stop(); engine.stop() }
            try port.start(engine: engine, id: id, bridge: bridge)
            let before = rxPackets(t, lan.namespace, lanInner(t))

            // Unicast to the namespace host (flooded until the switch learns it: the host's
            // answers, ICMP port unreachable, teach it).
            let pmd = try Testpmd(socket: port.path, mode: "txonly", frameSize: 64, queues: 2,
                                  extra: ["--rxq=2", "--txq=2", "--eth-peer=0,\(hostMAC)", "--tx-ip=198.18.0.20,198.18.0.1"])
            #expect(until(90) {
                let f = port.currentStatus.pairFrames
                return (f.count == 2 && f[0].fromGuest >= 5_000 && f[1].fromGuest >= 5_000) || !pmd.process.isRunning
            })
            let out = pmd.stop()
            #expect(until(15) { !port.currentStatus.connected })
            let sent = Testpmd.counter("TX-packets", in: out) ?? -1
            let snap = engine.snapshot().bridge("mqbr")
            let v = try #require(snap?.port(id)), m = try #require(snap?.port(macvtapID))
            // The host counts every frame the macvtap wrote (its answers aside); wait for the
            // last ones to arrive.
            var hostGot = 0
            _ = until(10) { hostGot = rxPackets(t, lan.namespace, lanInner(t)) - before; return hostGot >= Int(m.txFrames) }
            let status = port.currentStatus
            let negotiation = logs.all.filter { $0.contains("negotiated") || $0.contains("pairs active") || $0.contains("enabled") || $0.contains("refused") }
            print("vhost-user MQ testpmd txonly: testpmd sent \(sent); pairs \(status.pairFrames); vhost port rx \(v.rxFrames) drops \(v.drops); macvtap tx \(m.txFrames) drops \(m.drops); namespace host received \(hostGot)\n\(negotiation.joined(separator: "\n"))")
            if sent < 0 { print(out.suffix(3000)) }
            #expect(sent >= 10_000, "\(out.suffix(2000))")
            #expect(Int(v.rxFrames) == sent, "every frame testpmd made available was taken")
            #expect(status.pairFrames.allSatisfy { $0.fromGuest >= 5_000 }, "both pairs carry frames: \(status.pairFrames)")
            #expect(Int(status.pairFrames[0].fromGuest + status.pairFrames[1].fromGuest) == sent)
            #expect(m.txFrames + m.totalDrops == v.rxFrames - v.totalDrops)
            #expect(m.txFrames >= UInt64(sent / 2), "most frames left by the macvtap")
            // (A loaded machine's veth backlog may drop a few: not ours to count.)
            #expect(hostGot * 10 >= Int(m.txFrames) * 9, "the namespace host received what the macvtap wrote")
            #expect(logs.all.contains { $0.contains("negotiated protocol features: MQ REPLY_ACK") })
            #expect(logs.all.contains { $0.contains("queue pairs active: 0 (worker 0), 1 (worker 1) of 2") })
        }
    }
}

@Suite(.serialized, .enabled(if: getuid() == 0 && Guest.available, "needs root, qemu-system-x86_64 and the tools/build-guest guest"))
struct VhostUserMultiQueueQEMUTests {
    @Test func qemuGuestWithTwoPairsPingsThroughSwitchBeforeAndAfterEthtool() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: [vmMAC])
            let dir = try vhostTempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let logs = Lines()
            var c = EngineConfiguration(workers: 2)
            c.buffersPerWorker = 128
            c.log = { l, s in logs.add("\(l): \(s)") }
            let engine = Engine(configuration: c)
            let bridge = engine.addBridge(name: "mqvm", pipeline: HandlerPipeline([LearningSwitch()]))
            try bridge.attach(MacvtapPort(name: lan.macvtap))
            let port = VhostUserPort(name: "vm0", path: dir + "/vm0.sock", settings: vmSettings, queuePairs: 2, log: { logs.add($0) })
            let id = try bridge.attach(port)
            try engine.start()
            defer { port.stop(); engine.stop() }
            try port.start(engine: engine, id: id, bridge: bridge)
            let out = try Guest.boot(netdev: "vhost-user,id=n0,chardev=c0,queues=2", mac: vmMAC,
                                     cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=mq", timeout: 150,
                                     vhostUser: true, deviceOptions: ",mq=on",
                                     extraArgs: ["-chardev", "socket,id=c0,path=\(port.path)"])
            let s = engine.snapshot().bridge("mqvm")?.port(id)
            let seen = logs.all.filter { $0.contains("negotiated") || $0.contains("pairs active") || $0.contains("enabled") || $0.contains("disabled") || $0.contains("refused") || $0.contains("broken") }
            print("vhost-user MQ QEMU guest: \(out.split(separator: "\n").filter { $0.contains("TAPBRIDGE-GUEST") }); port \(s.map { "\($0)" } ?? "-"); pairs \(port.currentStatus.pairFrames)\n\(seen.joined(separator: "\n"))")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS mq tx queues 1 then 2"), "\(out.suffix(1500))")
            #expect(logs.all.contains { $0.contains("negotiated features") && $0.contains(" MQ") })
            #expect(logs.all.contains { $0.contains("queue pairs active: 0 (worker 0) of 2") }, "the driver started with one pair")
            #expect(logs.all.contains { $0.contains("queue 2 (pair 1 receive) enabled") }, "ethtool -L: QEMU enabled pair 1")
            #expect(logs.all.contains { $0.contains("queue pairs active: 0 (worker 0), 1 (worker 1) of 2") })
            #expect((s?.totalDrops ?? 1) == 0 || (s?.drops.keys.allSatisfy { $0 == .queueFull } ?? false))

            // QEMU restarted, tapbridge not: the port takes the new front-end's two pairs.
            let again = try Guest.boot(netdev: "vhost-user,id=n0,chardev=c0,queues=2", mac: vmMAC,
                                       cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=ping", timeout: 150,
                                       vhostUser: true, deviceOptions: ",mq=on",
                                       extraArgs: ["-chardev", "socket,id=c0,path=\(port.path)"])
            #expect(again.contains("TAPBRIDGE-GUEST: PASS ping"), "\(again.suffix(1000))")
            #expect(port.currentStatus.connections == 2)
        }
    }
}
