// Tap and host ports through the daemon: a QEMU guest on `-netdev tap` against a `kind = "tap"`
// port, runtime `port add|del` of both kinds, a host port that reaches a VM and a namespace host
// (daemon and host port inside a test namespace, so the "host" is that namespace) and is gone
// after SIGTERM and after SIGKILL, and how the host reaches a `[[vms]]` VM on its LAN parent.
import Foundation
import Testing
import TestSupport

/// A veth pair: `inner` in namespace `home` (the daemon's), `outer` in a new LAN namespace at
/// 198.18.0.1/24 with IPv6 off.
struct LANHost {
    let namespace: String
    let inner: String
    init(_ t: Topology, home: String, short: String = "lv", lanAddress: String = "198.18.0.1/24") throws {
        namespace = try t.addNamespace("lan")
        inner = t.ifname(short)
        let outer = t.ifname(short + "o")
        try t.addVeth(inner, outer)
        try t.exec(namespace, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
        try t.move(outer, to: namespace, address: lanAddress)
        try t.move(inner, to: home, up: true)
    }
}

@Suite(.serialized) struct TapHostPortTests {
    static let guestMAC = "52:54:00:12:34:71"

    @Test(.enabled(if: Guest.available, "qemu-system-x86_64 or the tools/build-guest guest is missing: QEMU tap test skipped"))
    func tapPortServesAQEMUGuestAndIsDeletedAtStop() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let tap = t.ifname("tp"), macvtap = t.ifname("tpm")
            let d = try DaemonProcess(t, config: """
                [[bridges]]
                name = "br0"
                \(h.portTables())
                [[bridges.ports]]
                name = "\(tap)"
                kind = "tap"
                macvtap = "\(macvtap)"
                user = "nobody"
                mac = "\(Self.guestMAC)"
                addresses = ["198.18.0.10"]
                """)
            t.track(link: tap)
            let details = try run(["ip", "-d", "link", "show", tap]).stdout
            #expect(details.contains("persist on") && details.contains("user nobody"), "\(details)")
            #expect(linkDetails(macvtap) != nil, "the passthru macvtap on the tap")
            let ports = try #require(try cliJSON(d, ["ports"])["ports"] as? [[String: Any]])
            let entry = try #require(ports.first { $0["name"] as? String == tap }, "\(ports)")
            #expect(entry["kind"] as? String == "tap" && entry["created"] as? Bool == true, "\(entry)")

            // No VMM yet: frames for the tap port are dropped and counted as port-down.
            try d.waitFor("port link cannot carry frames")
            _ = h.ping(0, "198.18.0.10", count: 1)
            let stats = try #require(try cliJSON(d, ["stats", tap])["ports"] as? [[String: Any]]).first
            let drops = stats?["drops"] as? [String: Any]
            #expect((drops?["port-down"] as? Int ?? 0) > 0, "frames for a tap without its VMM are counted: \(String(describing: stats))")

            // Only root and the owner may attach: another uid is refused by the kernel.
            #expect(try attachAs(uid: 4242, gid: 4242, tap: tap) == "EPERM")
            #expect(try attachAs(uid: 65534, gid: 65534, tap: tap) == "ok")

            // A guest pings the namespace host; then a second QEMU, unprivileged (uid nobody, the
            // tap's owner, no capabilities), attaches to the same tap and is served too.
            for round in 1...2 {
                let asOwner = round == 2 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"] : []
                let out = try Guest.boot(netdev: "tap,id=n0,ifname=\(tap),script=no,downscript=no,vhost=off", mac: Self.guestMAC,
                                         cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=ping", wrapper: asOwner)
                #expect(out.contains("TAPBRIDGE-GUEST: PASS ping 198.18.0.1"), "round \(round): \(out.suffix(600))\n\(d.log)")
            }
            // (The kernel reports carrier changes up to a second late and may fold a quick
            // down-up into one state, so count at least one.)
            #expect(d.log.contains("port link up again: forwarding"), "the daemon follows the VMM coming:\n\(d.log)")

            // A tap port given at run time, and taken away again.
            let extra = t.ifname("tq")
            let added = try cli(d, ["port", "add", extra, "kind", "tap", "user", "nobody", "queues", "2", "--bridge", "br0"])
            #expect(added.stdout.contains("added"), "\(added.stdout)\(added.stderr)")
            #expect((try run(["ip", "-d", "link", "show", extra]).stdout).contains("multi_queue"))
            _ = try cli(d, ["port", "del", extra])
            #expect(linkDetails(extra) == nil && linkDetails("mt" + extra) == nil, "port del deletes the tap and its macvtap")

            #expect(d.stop() == 0)
            #expect(linkDetails(tap) == nil && linkDetails(macvtap) == nil, "the tap and its macvtap are deleted at stop:\n\(d.log)")
        }
    }

    /// `[[vms]]` with `tap`: a QEMU guest on `-netdev tap` reaches the LAN through a bridge-mode
    /// macvtap with its MAC on the parent; anti-spoofing is on.
    @Test(.enabled(if: Guest.available, "qemu-system-x86_64 or the tools/build-guest guest is missing: QEMU tap test skipped"))
    func vmsAttachmentWithATap() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let tap = t.ifname("vt")
            let d = try DaemonProcess(t, config: """
                [[vms]]
                name = "g"
                tap = "\(tap)"
                mac = "\(Self.guestMAC)"
                parent = "\(h.veths[0])"
                macvtap = "\(t.ifname("va"))"
                addresses = ["198.18.0.10"]
                """)
            t.track(link: tap)
            let out = try Guest.boot(netdev: "tap,id=n0,ifname=\(tap),script=no,downscript=no,vhost=off", mac: Self.guestMAC,
                                     cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=ping")
            #expect(out.contains("TAPBRIDGE-GUEST: PASS ping 198.18.0.1"), "\(out.suffix(600))\n\(d.log)")
            // A guest that changes its MAC gets nothing through.
            let spoof = try Guest.boot(netdev: "tap,id=n0,ifname=\(tap),script=no,downscript=no,vhost=off", mac: Self.guestMAC,
                                       cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.mac=52:54:00:66:66:66 tb.test=ping")
            #expect(spoof.contains("TAPBRIDGE-GUEST: FAIL no reply from 198.18.0.1"), "\(spoof.suffix(600))")
            #expect(d.stop() == 0)
            #expect(linkDetails(tap) == nil && linkDetails(t.ifname("va")) == nil)
            let c = finalCounters(d.log)
            #expect((c[tap]?.int("drop-spoofed") ?? 0) > 0, "\(c[tap] ?? [:])")
        }
    }

    @Test(.enabled(if: Guest.available, "qemu-system-x86_64 or the tools/build-guest guest is missing: QEMU host-port test skipped"))
    func hostPortReachesAVMAndANamespaceHostAndIsGoneAfterStopAndCrash() throws {
        try withTopology { t in
            let home = try t.addNamespace("home")   // the daemon's namespace: "the host"
            let lan = try LANHost(t, home: home)
            let hostPort = t.ifname("hp"), macvtap = t.ifname("lm")
            let socket = "/tmp/\(t.tag)-vm.sock"
            let config = """
                [[bridges]]
                name = "br0"
                [[bridges.ports]]
                name = "\(hostPort)"
                kind = "host"
                addresses = ["198.18.0.254/24"]
                [[bridges.ports]]
                name = "\(macvtap)"
                parent = "\(lan.inner)"
                mode = "passthru"
                [[bridges.ports]]
                name = "vm0"
                kind = "vm"
                path = "\(socket)"
                mac = "\(Self.guestMAC)"
                """
            let inHome = ["ip", "netns", "exec", home]
            var d = try DaemonProcess(t, config: config, wrapper: inHome)
            let addr = try t.exec(home, ["ip", "addr", "show", hostPort]).stdout
            #expect(addr.contains("inet 198.18.0.254/24"), "\(addr)")
            #expect(try t.exec(home, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "198.18.0.1"], check: false).succeeded,
                    "the host reaches the namespace host through its host port:\n\(d.log)")

            // iperf3 between the host port and the namespace host (bounded: 3 s).
            let srv = try BackgroundCommand(["ip", "netns", "exec", lan.namespace, "iperf3", "-s", "-1", "-B", "198.18.0.1"], cleanup: t)
            var iperfOut = ""
            for _ in 0..<20 {
                usleep(100_000)
                let r = try t.exec(home, ["iperf3", "-c", "198.18.0.1", "-t", "3", "-J"], check: false, timeout: 40)
                iperfOut = r.stdout + r.stderr
                if r.succeeded || !iperfOut.contains("refused") { break }
            }
            srv.stop()
            let received = (((try? json(iperfOut)) as? [String: Any])?["end"] as? [String: Any]).flatMap { ($0["sum_received"] as? [String: Any])?["bytes"] as? Int } ?? 0
            print("iperf3 host port -> namespace host: \(received) bytes in 3 s")
            #expect(received > 1_000_000, "\(iperfOut.suffix(400))")

            // A QEMU guest on the vm port: the host pings it while it serves.
            let console = Locked("")
            let done = DispatchSemaphore(value: 0)
            Thread {
                let o = (try? Guest.boot(netdev: "stream,id=n0,server=off,addr.type=unix,addr.path=\(socket)", mac: Self.guestMAC,
                                         cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.254 tb.test=serve tb.wait=10", timeout: 120)) ?? "boot failed"
                console.set(o)
                done.signal()
            }.start()
            var reached = false
            let deadline = Date().addingTimeInterval(90)
            while !reached && Date() < deadline {
                reached = (try? t.exec(home, ["ping", "-c", "1", "-W", "1", "198.18.0.10"], check: false))?.succeeded ?? false
            }
            #expect(reached, "the host reaches the QEMU guest through its host port:\n\(d.log)")
            _ = done.wait(timeout: .now() + 120)
            #expect(console.get().contains("TAPBRIDGE-GUEST: SERVING"), "the guest reached the host: \(console.get().suffix(600))")

            // Gone after SIGTERM.
            #expect(d.stop() == 0)
            #expect(linkDetails(hostPort, netns: home) == nil, "the host port is deleted at stop:\n\(d.log)")
            // Gone after SIGKILL too (not persistent: the kernel deletes it with the daemon's
            // last descriptor), and a restart makes it again.
            d = try DaemonProcess(t, config: config, wrapper: inHome)
            #expect(linkDetails(hostPort, netns: home) != nil)
            #expect(d.stop(signal: SIGKILL) != 0)
            // io_uring lets go of the files of a dead process's ring asynchronously: wait (bounded).
            let gone = Date().addingTimeInterval(5)
            while linkDetails(hostPort, netns: home) != nil && Date() < gone { usleep(20_000) }
            #expect(linkDetails(hostPort, netns: home) == nil, "the host port is gone after a crash")
            d = try DaemonProcess(t, config: config, arguments: ["--state-dir", d.stateDir], wrapper: inHome)
            #expect(try t.exec(home, ["ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.0.1"], check: false).succeeded, "\(d.log)")
            #expect(d.stop() == 0)
            #expect(linkDetails(hostPort, netns: home) == nil)
        }
    }

    /// The ledger after a crash: a tap the configuration still wants is reclaimed (the same
    /// link: a VMM attached to it keeps it), one it no longer wants is deleted with its macvtap.
    @Test func tapIsReclaimedAfterACrashOrDeletedWhenNoLongerWanted() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let tap = t.ifname("tc")
            let tapPort = """
                [[bridges.ports]]
                name = "\(tap)"
                kind = "tap"
                user = "nobody"
                """
            let config = "[[bridges]]\nname = \"br0\"\n" + h.portTables() + tapPort
            var d = try DaemonProcess(t, config: config)
            t.track(link: tap)
            let index = try #require(linkDetails(tap)?["ifindex"] as? Int)
            #expect(d.stop(signal: SIGKILL) != 0)
            #expect(linkDetails(tap) != nil && linkDetails("mt" + tap) != nil, "a crash leaves the persistent tap and its macvtap")
            let state = d.stateDir
            d = try DaemonProcess(t, config: config, arguments: ["--state-dir", state])
            #expect(d.log.contains("link reclaimed") && d.log.contains("link=\(tap)"), "\(d.log)")
            #expect(linkDetails(tap)?["ifindex"] as? Int == index, "the same tap, not a new one")
            let ports = try #require(try cliJSON(d, ["ports"])["ports"] as? [[String: Any]])
            // Attached again; "down" only because no VMM holds the tap (its link is not operationally up).
            #expect(ports.first { $0["name"] as? String == tap }?["state"] as? String == "down", "\(ports)")
            #expect(ports.first { $0["name"] as? String == tap }?["created"] as? Bool == true, "\(ports)")
            #expect(d.stop(signal: SIGKILL) != 0)
            // Restarted with a file that no longer has the tap: the left-over goes.
            d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables(), arguments: ["--state-dir", state])
            #expect(d.log.contains("left-over link deleted"), "\(d.log)")
            #expect(linkDetails(tap) == nil && linkDetails("mt" + tap) == nil)
            #expect(d.stop() == 0)
        }
    }

    /// A `[[vms]]` VM on the LAN parent of the host: the host cannot reach it through the parent
    /// (macvtap never hands the lower device's own frames to its sub-interfaces), but can through
    /// a bridge-mode macvlan on the same parent and a /32 route, as docs/vms.md says.
    @Test func hostReachesAVMOnItsLANParentThroughAMacvlanRoute() throws {
        try withTopology { t in
            let home = try t.addNamespace("home")
            let lan = try LANHost(t, home: home)
            try t.exec(home, ["ip", "addr", "add", "198.18.0.5/24", "dev", lan.inner])
            let socket = "/tmp/\(t.tag)-vm0.sock"
            let d = try DaemonProcess(t, config: """
                [[vms]]
                name = "vm0"
                mac = "52:54:00:ab:cd:01"
                parent = "\(lan.inner)"
                macvtap = "\(t.ifname("a0"))"
                path = "\(socket)"
                """, wrapper: ["ip", "netns", "exec", home])
            let vm = try FakeVM(path: socket, mac: "52:54:00:ab:cd:01", ip: "198.18.0.10")
            #expect(vm.resolve("198.18.0.1") != nil, "the VM reaches the LAN host:\n\(d.log)")
            #expect(vm.resolve("198.18.0.5") == nil, "the host's address on the parent itself is out of reach")
            let hm = t.ifname("hm")
            try t.exec(home, ["ip", "link", "add", "link", lan.inner, "name", hm, "type", "macvlan", "mode", "bridge"])
            try t.exec(home, ["ip", "link", "set", hm, "up"])
            try t.exec(home, ["ip", "route", "add", "198.18.0.10/32", "dev", hm, "src", "198.18.0.5"])
            let hostMAC = try #require(vm.resolve("198.18.0.5"), "the host answers through the macvlan:\n\(d.log)")
            #expect(vm.ping("198.18.0.5", targetMAC: hostMAC, id: 7), "and its echo replies come back by the /32 route")
            #expect(d.stop() == 0)
        }
    }
}
