// End to end with real QEMU (TCG): a guest attached through tapbridge to a bridge-mode macvtap
// on a veth whose other end is a namespace host at 198.18.0.1/24. Skips (with the reason) if
// qemu-system-x86_64 is missing or tools/build-guest cannot build the guest (TestSupport.Guest).
import Datapath
import Foundation
import Frames
import Handlers
import Testing
import TestSupport
import UnixSocketFiles
@testable import VMBackend

/// The LAN side: a namespace host at 198.18.0.1/24 serving `bytes` over HTTP, and a bridge-mode
/// macvtap with the VM's MAC on the veth's root end.
struct LAN {
    var namespace: String
    var macvtap: String
    var macvtaps: [String] = []
    static let blobBytes = 2 * 1024 * 1024

    init(_ t: Topology, vmMACs: [String]) throws {
        namespace = try t.addNamespace("lan")
        let inner = t.ifname("li"), outer = t.ifname("lo")
        try t.addVeth(outer, inner)
        try t.move(inner, to: namespace, address: "198.18.0.1/24")
        try run(["ip", "link", "set", outer, "up"])
        macvtap = ""
        for (i, mac) in vmMACs.enumerated() {
            let m = t.ifname("v\(i)")
            try run(["ip", "link", "add", "link", outer, "name", m, "address", mac, "type", "macvtap", "mode", "bridge"])
            t.track(link: m)
            try run(["ip", "link", "set", m, "up"])
            if i == 0 { macvtap = m }
            macvtaps.append(m)
        }
        let www = "/tmp/tbvm-www-\(t.tag)"
        try run(["mkdir", "-p", www])
        try run(["sh", "-c", "head -c \(LAN.blobBytes) /dev/urandom > \(www)/blob"])
        // busybox httpd daemonizes inside the namespace; clean-up ends every process in that
        // namespace (ours: the test created it) before the namespace itself goes.
        // Spawned directly (posix_spawn, stdio to /dev/null) and reaped by us: a daemon started
        // through Foundation's Process left the test waiting forever for its launcher here.
        let argv = ["ip", "netns", "exec", namespace, "busybox", "httpd", "-f", "-p", "198.18.0.1:8080", "-h", www]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        for fd: Int32 in 0...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        var pid: pid_t = 0
        let cargs = argv.map { strdup($0) } + [nil]
        let rc = posix_spawnp(&pid, "ip", &actions, nil, cargs, environ)
        cargs.forEach { free($0) }
        posix_spawn_file_actions_destroy(&actions)
        guard rc == 0 else { throw UnixSocketError("start httpd for", namespace, errno: rc) }
        t.onCleanup {
            kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0)
            _ = try? run(["rm", "-rf", www])
        }
    }
}

final class Attachment {
    let engine: Engine
    let bridge: Bridge
    let supervisor: VMPortSupervisor
    let guard_ = SourceGuard(policies: ["vm0": .init(), "vm1": .init()])
    var logs: [String] = []
    init() {
        var c = EngineConfiguration(workers: 1)
        c.buffersPerWorker = 128
        engine = Engine(configuration: c)
        bridge = engine.addBridge(name: "vmbr", pipeline: HandlerPipeline([guard_]), offloads: [])
        supervisor = VMPortSupervisor(engine: engine)
    }
    func attach(macvtap: String, vm: any Datapath.Port) throws -> PortID {
        try bridge.attach(MacvtapPort(name: macvtap, vnetHeader: false))
        let id = try bridge.attach(vm)
        try engine.start()
        supervisor.watch(vm, id: id, in: bridge)
        return id
    }
    func stop() { supervisor.stop(); engine.stop() }
}

let vmMAC = "52:54:00:12:34:56"
let vmSettings = PortSettings(assignedMAC: MACAddress(vmMAC)!)
let guestNet = "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.port=8080 tb.bytes=\(LAN.blobBytes)"

@Suite(.serialized, .enabled(if: Guest.available, "qemu-system-x86_64 or the tools/build-guest guest is missing: QEMU end-to-end tests skipped"))
struct QEMUAttachmentTests {
    @Test func streamServerGuestPingsAndTransfersThenReconnects() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: [vmMAC])
            let path = "/tmp/tbvm-\(t.tag).sock"
            let a = Attachment()
            defer { a.stop() }
            _ = try a.attach(macvtap: lan.macvtap, vm: VMStreamServerPort(name: "vm0", path: path, settings: vmSettings))
            let netdev = "stream,id=n0,server=off,addr.type=unix,addr.path=\(path)"
            let start = Date()
            let out = try Guest.boot(netdev: netdev, mac: vmMAC, cmdline: guestNet + " tb.test=transfer")
            print("stream server guest: \(String(format: "%.1f", Date().timeIntervalSince(start))) s, \(out.split(separator: "\n").filter { $0.contains("TAPBRIDGE-GUEST") })")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS transfer \(LAN.blobBytes) bytes"), "\(out.suffix(600))")
            // The same guest booted again (QEMU restarted) is re-attached without touching the engine.
            let again = try Guest.boot(netdev: netdev, mac: vmMAC, cmdline: guestNet + " tb.test=ping")
            #expect(again.contains("TAPBRIDGE-GUEST: PASS ping"), "\(again.suffix(600))")
        }
    }

    @Test func datagramGuestPingsAndTransfers() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: [vmMAC])
            let ours = "/tmp/tbvm-\(t.tag)-tb.sock", qemuSide = "/tmp/tbvm-\(t.tag)-qemu.sock"
            defer { unlink(qemuSide) }
            let a = Attachment()
            defer { a.stop() }
            _ = try a.attach(macvtap: lan.macvtap, vm: VMDatagramPort(name: "vm0", localPath: ours, remotePath: qemuSide, settings: vmSettings))
            let out = try Guest.boot(netdev: "dgram,id=n0,local.type=unix,local.path=\(qemuSide),remote.type=unix,remote.path=\(ours)",
                                     mac: vmMAC, cmdline: guestNet + " tb.test=transfer")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS transfer \(LAN.blobBytes) bytes"), "\(out.suffix(600))")
        }
    }

    @Test func streamClientGuest() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: [vmMAC])
            let path = "/tmp/tbvm-\(t.tag)-srv.sock"
            defer { unlink(path) }
            let a = Attachment()
            defer { a.stop() }
            _ = try a.attach(macvtap: lan.macvtap, vm: VMStreamClientPort(name: "vm0", path: path, settings: vmSettings))
            // QEMU listens (server=on; 7.2 has no wait= for -netdev stream); tapbridge's client port finds it by retrying.
            let out = try Guest.boot(netdev: "stream,id=n0,server=on,addr.type=unix,addr.path=\(path)",
                                     mac: vmMAC, cmdline: guestNet + " tb.test=ping")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS ping"), "\(out.suffix(600))")
        }
    }

    @Test func spoofedMACGetsNothingThrough() throws {
        try withTopology { t in
            let lan = try LAN(t, vmMACs: [vmMAC])
            let path = "/tmp/tbvm-\(t.tag).sock"
            let a = Attachment()
            defer { a.stop() }
            _ = try a.attach(macvtap: lan.macvtap, vm: VMStreamServerPort(name: "vm0", path: path, settings: vmSettings))
            // QEMU's NIC has the assigned MAC, but the guest changes it: its frames must be dropped.
            let out = try Guest.boot(netdev: "stream,id=n0,server=off,addr.type=unix,addr.path=\(path)",
                                     mac: vmMAC, cmdline: guestNet + " tb.mac=52:54:00:66:66:66 tb.test=ping")
            #expect(out.contains("TAPBRIDGE-GUEST: FAIL no reply from 198.18.0.1"), "\(out.suffix(600))")
            #expect(a.guard_.counters().first!.value > 0)
            let neigh = try t.exec(lan.namespace, ["ip", "neigh", "show", "198.18.0.10"], check: false).stdout
            #expect(!neigh.contains("52:54:00:66:66:66"), "the LAN host never learned the spoofed MAC")
        }
    }

    @Test func twoGuestsOnOneParentReachEachOtherAndTheLAN() throws {
        try withTopology { t in
            let macs = ["52:54:00:12:34:56", "52:54:00:12:34:57"]
            let lan = try LAN(t, vmMACs: macs)
            var attachments: [Attachment] = []
            defer { attachments.forEach { $0.stop() } }
            var netdevs: [String] = []
            for (i, mac) in macs.enumerated() {
                let a = Attachment()
                attachments.append(a)
                let path = "/tmp/tbvm-\(t.tag)-\(i).sock"
                _ = try a.attach(macvtap: lan.macvtaps[i], vm: VMStreamServerPort(name: "vm\(i)", path: path,
                                                                                settings: PortSettings(assignedMAC: MACAddress(mac)!)))
                netdevs.append("stream,id=n0,server=off,addr.type=unix,addr.path=\(path)")
            }
            // Guest 0 pings the LAN host then serves 256 KiB; guest 1 fetches it from guest 0.
            var outs = ["", ""]
            let lock = NSLock()
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let cmd = i == 0
                    ? "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=serve tb.bytes=262144 tb.port=8080 tb.wait=15"
                    : "tb.ip=198.18.0.11/24 tb.peer=198.18.0.10 tb.test=transfer tb.bytes=262144 tb.port=8080"
                let o = (try? Guest.boot(netdev: netdevs[i], mac: macs[i], cmdline: cmd, timeout: 120)) ?? "boot failed"
                lock.withLock { outs[i] = o }
            }
            #expect(outs[0].contains("TAPBRIDGE-GUEST: SERVING"), "guest 0 reached the LAN host: \(outs[0].suffix(400))")
            #expect(outs[1].contains("TAPBRIDGE-GUEST: PASS transfer 262144 bytes from 198.18.0.10"), "\(outs[1].suffix(400))")
        }
    }
}
