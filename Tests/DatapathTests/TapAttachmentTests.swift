// A QEMU guest (TCG) attached the way Firecracker, cloud-hypervisor, crosvm and QEMU `-netdev tap`
// attach: to a persistent tap by name. tapbridge reads the passthru macvtap on top of the tap
// (TapAttachmentPort) and switches it with a namespace host's passthru macvtap through the
// learning switch. The guest pings, serves a file the host fetches (TCP from the guest with TSO:
// super-frames cross), and a second QEMU attaching to the same tap is served again.
import Foundation
import Frames
import Handlers
import Tap
import Testing
import TestSupport
@testable import Datapath

/// A persistent tap for a VMM (owned by `owner`), addrgenmode none, up, with a passthru macvtap
/// on it, as the daemon makes them.
struct VMTap {
    let tap: String
    let macvtap: String

    init(_ t: Topology, short: String, owner: uid_t? = nil, multiQueue: Bool = false) throws {
        tap = t.ifname(short)
        macvtap = t.ifname(short + "m")
        try TunDevice.createPersistent(TapCreation(name: tap, multiQueue: multiQueue, owner: owner))
        t.track(link: tap)   // deleting the tap deletes the macvtap on it
        try run(["ip", "link", "set", tap, "addrgenmode", "none", "up"])
        try run(["ip", "link", "add", "link", tap, "name", macvtap, "type", "macvtap", "mode", "passthru"])
        try run(["ip", "link", "set", macvtap, "addrgenmode", "none", "up"])
    }

    func port(settings: PortSettings = PortSettings()) throws -> TapAttachmentPort {
        TapAttachmentPort(tap: tap, macvtap: try MacvtapDevice(name: macvtap), settings: settings)
    }
}

/// A namespace host at 198.18.0.1/24 behind a veth whose root end carries a passthru macvtap.
struct NamespaceHost {
    let namespace: String
    let macvtap: String
    init(_ t: Topology, address: String = "198.18.0.1/24") throws {
        namespace = try t.addNamespace("lan")
        let inner = t.ifname("li"), outer = t.ifname("lo")
        try t.addVeth(outer, inner)
        try t.move(inner, to: namespace, address: address)
        try run(["ip", "link", "set", outer, "up"])
        macvtap = t.ifname("lm")
        try run(["ip", "link", "add", "link", outer, "name", macvtap, "type", "macvtap", "mode", "passthru"])
        try run(["ip", "link", "set", macvtap, "up"])
    }
}

let tapGuestMAC = "52:54:00:12:34:70"

@Suite(.serialized, .enabled(if: Guest.available, "qemu-system-x86_64 or the tools/build-guest guest is missing: QEMU tap tests skipped"))
struct TapAttachmentTests {
    @Test func qemuTapGuestPingsServesWithTSOAndReattaches() throws {
        try withTopology { t in
            let lan = try NamespaceHost(t)
            let vmTap = try VMTap(t, short: "vt")
            var c = EngineConfiguration(workers: 1)
            c.buffersPerWorker = 128
            let engine = Engine(configuration: c)
            let bridge = engine.addBridge(name: "tapbr", pipeline: HandlerPipeline([LearningSwitch()]))
            try bridge.attach(try vmTap.port())
            try bridge.attach(MacvtapPort(name: lan.macvtap))
            try engine.start()
            defer { engine.stop() }
            let netdev = "tap,id=n0,ifname=\(vmTap.tap),script=no,downscript=no,vhost=off"

            // 1. Ping through the learning switch.
            let out = try Guest.boot(netdev: netdev, mac: tapGuestMAC, cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=ping")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS ping 198.18.0.1"), "\(out.suffix(600))")

            // 2. QEMU exited; a new one attaches to the same tap and serves 4 MiB, which the
            //    namespace host fetches: TCP from the guest, TSO on (QEMU's tap has a vnet header).
            let bytes = 4 * 1024 * 1024
            let console = Locked("")
            let done = DispatchSemaphore(value: 0)
            Thread {
                let o = (try? Guest.boot(netdev: netdev, mac: tapGuestMAC,
                                         cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=serve tb.bytes=\(bytes) tb.port=8080 tb.wait=30",
                                         timeout: 150)) ?? "boot failed"
                console.set(o)
                done.signal()
            }.start()
            var reached = false
            let deadline = Date().addingTimeInterval(90)
            while !reached && Date() < deadline {
                reached = (try? t.exec(lan.namespace, ["ping", "-c", "1", "-W", "1", "198.18.0.10"], check: false))?.succeeded ?? false
            }
            #expect(reached, "the re-attached guest answers ping")
            let before = engine.snapshot().bridge("tapbr")!.port(named: vmTap.tap)!
            // The guest answers ping before its httpd listens: retry while the connection is refused.
            var fetch = try t.exec(lan.namespace, ["sh", "-c", "busybox wget -q -O - http://198.18.0.10:8080/blob | wc -c"],
                                   check: false, timeout: 90)
            while fetch.stderr.contains("refused") && Date() < deadline {
                usleep(200_000)
                fetch = try t.exec(lan.namespace, ["sh", "-c", "busybox wget -q -O - http://198.18.0.10:8080/blob | wc -c"],
                                   check: false, timeout: 90)
            }
            #expect(fetch.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(bytes)", "\(fetch.stdout) \(fetch.stderr)")
            let after = engine.snapshot().bridge("tapbr")!.port(named: vmTap.tap)!
            print("tap port after the fetch: \(after)")
            #expect(after.rxLargeFrames > before.rxLargeFrames, "GSO super-frames from the guest crossed (frames above 1514 bytes)")
            #expect(after.largestRxFrame > 1514)
            let lanPort = engine.snapshot().bridge("tapbr")!.port(named: lan.macvtap)!
            #expect(lanPort.txLargeFrames > 0, "and left by the LAN port whole")
            #expect(after.totalDrops == 0, "\(after.drops)")
            // Let the guest finish (it powers off after tb.wait).
            _ = done.wait(timeout: .now() + 160)
            #expect(console.get().contains("TAPBRIDGE-GUEST: SERVING"), "\(console.get().suffix(600))")
        }
    }

    /// A multi-queue tap (the daemon's `queues = 2`) and QEMU `-netdev tap,...,queues=2`, which
    /// attaches two queues with IFF_MULTI_QUEUE; a single-queue QEMU is refused by the kernel.
    @Test func multiQueueTapTakesAMultiQueueQEMU() throws {
        try withTopology { t in
            let lan = try NamespaceHost(t)
            let vmTap = try VMTap(t, short: "vq", multiQueue: true)
            let engine = Engine(configuration: EngineConfiguration(workers: 1))
            let bridge = engine.addBridge(name: "tapbr", pipeline: HandlerPipeline([LearningSwitch()]))
            try bridge.attach(try vmTap.port())
            try bridge.attach(MacvtapPort(name: lan.macvtap))
            try engine.start()
            defer { engine.stop() }
            let out = try Guest.boot(netdev: "tap,id=n0,ifname=\(vmTap.tap),script=no,downscript=no,vhost=off,queues=2", mac: tapGuestMAC,
                                     cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=ping")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS ping 198.18.0.1"), "\(out.suffix(600))")
            let single = try Guest.boot(netdev: "tap,id=n0,ifname=\(vmTap.tap),script=no,downscript=no,vhost=off", mac: tapGuestMAC,
                                        cmdline: "tb.test=none", timeout: 30)
            #expect(single.contains("Invalid argument"), "QEMU without queues= is refused: \(single.suffix(300))")
        }
    }
}
