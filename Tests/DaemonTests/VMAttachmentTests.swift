// VMAttachmentTests: the daemon runs a `[[vms]]` attachment from a TOML file; a stream-socket
// client written here plays the VM (QEMU's framing: 4-byte big-endian length + frame) and talks
// to a host in a namespace behind the macvtap's parent. Spoofed source MAC / ARP / IPv4 / IPv6
// frames are dropped and counted per reason. One QEMU guest goes through the daemon end to end.
import Foundation
import Testing
import TestSupport
@testable import Daemon

/// The VM side of a QEMU stream socket.
final class FakeVM {
    let fd: Int32
    let mac: [UInt8]
    let ip: [UInt8]
    private var buffer: [UInt8] = []

    /// Connects to tapbridge's socket (QEMU `server=off`).
    convenience init(path: String, mac: String, ip: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let r = withUnixAddress(path) { connect(fd, $0, $1) }
        guard r == 0 else { close(fd); throw HarnessError("connect \(path): errno \(errno)") }
        self.init(fd: fd, mac: mac, ip: ip)
    }

    /// Listens on `path` and waits for tapbridge to connect (QEMU `server=on`).
    convenience init(listeningAt path: String, mac: String, ip: String, timeout: Int = 10) throws {
        let l = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(l) }
        guard withUnixAddress(path, { bind(l, $0, $1) }) == 0, listen(l, 1) == 0 else { throw HarnessError("listen \(path): errno \(errno)") }
        var pfd = pollfd(fd: l, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { throw HarnessError("tapbridge never connected to \(path)") }
        let fd = accept(l, nil, nil)
        guard fd >= 0 else { throw HarnessError("accept: errno \(errno)") }
        self.init(fd: fd, mac: mac, ip: ip)
    }

    /// Owns `fd`.
    init(fd: Int32, mac: String, ip: String) {
        self.fd = fd
        self.mac = bytes(mac: mac); self.ip = bytes(ipv4: ip)
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }

    func send(_ frame: [UInt8]) {
        let n = frame.count
        let out = [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + frame
        _ = out.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Frames from tapbridge until `match` accepts one (answering ARP requests for our IP on the
    /// way, as a VM would) or `timeout` passes.
    func receive(timeout: Double = 5, _ match: ([UInt8]) -> Bool) -> [UInt8]? {
        let end = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Date() < end {
            while buffer.count >= 4 {
                let len = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
                guard buffer.count >= 4 + len else { break }
                let f = Array(buffer[4..<(4 + len)])
                buffer.removeFirst(4 + len)
                if match(f) { return f }
                if f.count >= 42, f[12] == 0x08, f[13] == 0x06, f[21] == 1, Array(f[38..<42]) == ip {
                    send(arpFrame(op: 2, srcMAC: mac, srcIP: ip, dstMAC: Array(f[22..<28]), dstIP: Array(f[28..<32])))
                }
            }
            let n = read(fd, &chunk, chunk.count)
            if n > 0 { buffer += chunk[0..<n] } else if n == 0 { return nil }
        }
        return nil
    }

    /// ARP for `target` (asked up to 10 times, 0.5 s apart: the first may go out while the
    /// new macvtap is still coming up); the answering MAC.
    func resolve(_ target: String) -> [UInt8]? {
        let t = bytes(ipv4: target)
        for _ in 0..<10 {
            send(arpFrame(op: 1, srcMAC: mac, srcIP: ip, dstMAC: [0, 0, 0, 0, 0, 0], dstIP: t))
            if let f = receive(timeout: 0.5, { $0.count >= 42 && $0[12] == 0x08 && $0[13] == 0x06 && $0[21] == 2 && Array($0[28..<32]) == t }) {
                return Array(f[22..<28])
            }
        }
        return nil
    }

    /// An ICMP echo to `target` (at `targetMAC`), up to 3 tries; true when a reply came back.
    func ping(_ target: String, targetMAC: [UInt8], id: UInt16) -> Bool {
        for _ in 0..<3 {
            send(icmpEcho(srcMAC: mac, dstMAC: targetMAC, srcIP: ip, dstIP: bytes(ipv4: target), id: id))
            if receive(timeout: 1, { f in
                f.count >= 42 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 1 && f[34] == 0
                    && f[38] == UInt8(id >> 8) && f[39] == UInt8(id & 0xff)
            }) != nil { return true }
        }
        return false
    }
}

func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var sa = sockaddr_un()
    sa.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
    return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
}

/// Connects a datagram socket to `path` once it exists (the daemon binds it when it starts).
func waitConnect(_ fd: Int32, _ path: String) -> Bool {
    for _ in 0..<100 {
        if withUnixAddress(path, { connect(fd, $0, $1) }) == 0 { return true }
        usleep(50_000)
    }
    return false
}

func bytes(mac: String) -> [UInt8] { mac.split(separator: ":").map { UInt8($0, radix: 16) ?? 0 } }
func bytes(ipv4: String) -> [UInt8] { ipv4.split(separator: ".").map { UInt8($0) ?? 0 } }

func arpFrame(op: UInt8, srcMAC: [UInt8], srcIP: [UInt8], dstMAC: [UInt8], dstIP: [UInt8], ethSource: [UInt8]? = nil) -> [UInt8] {
    let ethDst: [UInt8] = op == 1 ? [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] : dstMAC
    return ethDst + (ethSource ?? srcMAC) + [0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op] + srcMAC + srcIP + dstMAC + dstIP
}

func internetChecksum(_ b: ArraySlice<UInt8>) -> UInt16 {
    var sum: UInt32 = 0
    var i = b.startIndex
    while i + 1 < b.endIndex { sum += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
    if i < b.endIndex { sum += UInt32(b[i]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

func icmpEcho(srcMAC: [UInt8], dstMAC: [UInt8], srcIP: [UInt8], dstIP: [UInt8], id: UInt16) -> [UInt8] {
    var icmp: [UInt8] = [8, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xff), 0, 1] + [UInt8](repeating: 0x42, count: 32)
    let c = internetChecksum(icmp[...])
    icmp[2] = UInt8(c >> 8); icmp[3] = UInt8(c & 0xff)
    let total = 20 + icmp.count
    var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0x40, 0, 64, 1, 0, 0] + srcIP + dstIP
    let ic = internetChecksum(ip[...])
    ip[10] = UInt8(ic >> 8); ip[11] = UInt8(ic & 0xff)
    return dstMAC + srcMAC + [0x08, 0x00] + ip + icmp
}

/// An IPv6 UDP datagram header chain (enough for the source check; never delivered anywhere).
func ipv6Frame(srcMAC: [UInt8], source: [UInt8]) -> [UInt8] {
    let dst: [UInt8] = [0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [1]
    return [0x33, 0x33, 0, 0, 0, 1] + srcMAC + [0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64] + source + dst + [0, 1, 0, 2, 0, 8, 0, 0]
}

@Suite struct DaemonVMAttachment {
    static let vmMAC = "52:54:00:ab:cd:01"

    /// A `[[vms]]` entry: VM `vm0` on the macvtap `<tag>m0` of host 0's veth.
    static func attachment(_ t: Topology, _ h: Hosts, index: Int = 0, extra: String = "") -> (toml: String, socket: String) {
        let socket = "/tmp/\(t.tag)-vm\(index).sock"
        return ("""
            [[vms]]
            name = "vm\(index)"
            mac = "52:54:00:ab:cd:0\(index + 1)"
            parent = "\(h.veths[0])"
            macvtap = "\(t.ifname("a\(index)"))"
            path = "\(socket)"
            \(extra)

            """, socket)
    }

    @Test func fakeVMTalksToTheLANAndSpoofsAreDroppedPerReason() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let (toml, socket) = Self.attachment(t, h, extra: "addresses = [\"198.18.0.10\"]")
            let d = try DaemonProcess(t, config: toml)
            #expect(linkDetails(t.ifname("a0")) != nil, "the daemon created the macvtap")
            let vm = try FakeVM(path: socket, mac: Self.vmMAC, ip: "198.18.0.10")
            let hostMAC = try #require(vm.resolve("198.18.0.1"), "no ARP reply from the LAN host:\n\(d.log)")
            #expect(hostMAC == bytes(mac: h.macs[0]))
            #expect(vm.ping("198.18.0.1", targetMAC: hostMAC, id: 1), "no echo reply:\n\(d.log)")

            // Spoofs: another source MAC; our MAC but another ARP sender IP / IPv4 / IPv6 source.
            let evil = bytes(mac: "52:54:00:66:66:66"), other = bytes(ipv4: "198.18.0.99")
            vm.send(arpFrame(op: 1, srcMAC: evil, srcIP: vm.ip, dstMAC: [0, 0, 0, 0, 0, 0], dstIP: bytes(ipv4: "198.18.0.1")))
            vm.send(arpFrame(op: 1, srcMAC: vm.mac, srcIP: other, dstMAC: [0, 0, 0, 0, 0, 0], dstIP: bytes(ipv4: "198.18.0.1")))
            vm.send(icmpEcho(srcMAC: vm.mac, dstMAC: hostMAC, srcIP: other, dstIP: bytes(ipv4: "198.18.0.1"), id: 2))
            vm.send(ipv6Frame(srcMAC: vm.mac, source: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [0x99]))
            // The connection survives the spoofs: a legitimate ping still works.
            #expect(vm.ping("198.18.0.1", targetMAC: hostMAC, id: 3))
            let neigh = try t.exec(h.namespaces[0], ["ip", "neigh", "show"]).stdout
            #expect(!neigh.contains("198.18.0.99") && !neigh.contains("52:54:00:66:66:66"), "a spoof got through: \(neigh)")
            #expect(d.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at stop")
            #expect(linkDetails(t.ifname("a0")) == nil, "the macvtap is deleted at stop")
            let c = finalCounters(d.log)
            let port = try #require(c["vm0"], "no counters for vm0:\n\(d.log)")
            #expect(port.int("drop-spoofed") == 1 && port.int("drop-spoofed-arp") == 1, "\(port)")
            #expect(port.int("drop-spoofed-ipv4") == 1 && port.int("drop-spoofed-ipv6") == 1, "\(port)")
            #expect(port.int("rx-frames") >= 7 && port.int("tx-frames") >= 2, "\(port)")
            let g = try #require(c["handler:source-guard"], "\(c.keys)")
            #expect(g.int("spoofed_dropped-check-mac") == 1 && g.int("spoofed_dropped-check-ipv4") == 1, "\(g)")
        }
    }

    /// Issue 12 #11: second connections refused while a VM is attached are counted in
    /// `tapbridge stats` and the metrics endpoint (they were only logged).
    @Test func refusedSecondConnectionsAreCounted() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let (toml, socket) = Self.attachment(t, h)
            let d = try DaemonProcess(t, config: "metrics = \"127.0.0.1:0\"\n" + toml)
            let port = try #require(metricsPort(d.log), "no metrics address in the log:\n\(d.log)")
            let vm = try FakeVM(path: socket, mac: Self.vmMAC, ip: "198.18.0.10")
            #expect(vm.resolve("198.18.0.1") != nil, "\(d.log)")
            for _ in 0..<2 {
                let intruder = try FakeVM(path: socket, mac: "52:54:00:66:66:66", ip: "198.18.0.66")
                // The daemon closes it: a read sees end of file.
                var b: UInt8 = 0
                var pfd = pollfd(fd: intruder.fd, events: Int16(POLLIN), revents: 0)
                #expect(poll(&pfd, 1, 5000) == 1 && read(intruder.fd, &b, 1) == 0, "the second connection was not closed")
            }
            let stats = try #require((try cliJSON(d, ["stats", "vm0"])["ports"] as? [[String: Any]])?.first)
            #expect(stats["refusedConnections"] as? Int == 2, "\(stats)")
            #expect(try cli(d, ["stats", "vm0"]).stdout.contains("refused connections"))
            var value: Double?
            for _ in 0..<50 {
                value = try parseMetrics(httpGet(port: port, path: "/metrics").body).value("tapbridge_vm_refused_connections_total", ["port": "vm0"])
                if value == 2 { break }
                usleep(100_000)
            }
            #expect(value == 2)
            #expect(vm.ping("198.18.0.1", targetMAC: bytes(mac: h.macs[0]), id: 1), "the attached VM lost its port:\n\(d.log)")
            #expect(d.stop() == 0)
        }
    }

    @Test func vmAttachmentAddedAndRemovedBySIGHUP() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let first = Self.attachment(t, h)
            let second = Self.attachment(t, h, index: 1)
            let d = try DaemonProcess(t, config: first.toml)
            #expect(!FileManager.default.fileExists(atPath: second.socket))
            try (first.toml + second.toml).write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("info reloaded")
            #expect(linkDetails(t.ifname("a1")) != nil, "\(d.log)")
            let vm = try FakeVM(path: second.socket, mac: "52:54:00:ab:cd:02", ip: "198.18.0.11")
            #expect(vm.resolve("198.18.0.1") != nil, "the VM added by reload reaches the LAN:\n\(d.log)")
            // Now the first one goes.
            try second.toml.write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("port removed by reload bridge=vm-vm0 port=vm0")
            try d.waitFor("info reloaded ports=vm1,")
            #expect(linkDetails(t.ifname("a0")) == nil)
            #expect(!FileManager.default.fileExists(atPath: first.socket), "the removed VM's socket file is gone")
            #expect(vm.resolve("198.18.0.1") != nil, "the remaining VM still works")
            #expect(d.stop() == 0)
        }
    }

    /// A `kind = "vm"` port in a learning-switch bridge, tapbridge as the stream client of a
    /// "QEMU" listening here; the switch learns the VM and forwards to the LAN host.
    @Test func vmPortInALearningSwitchAsStreamClient() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let path = "/tmp/\(t.tag)-qemu.sock"
            t.onCleanup { unlink(path) }
            let d = try DaemonProcess(t, config: """
                [[bridges]]
                name = "lab"
                [[bridges.ports]]
                name = "labvm"
                kind = "vm"
                socket = "stream-client"
                path = "\(path)"
                mac = "52:54:00:ab:cd:09"
                [[bridges.ports]]
                name = "\(h.macvtaps[0])"
                parent = "\(h.veths[0])"
                mode = "passthru"

                """)
            // tapbridge retries with backoff until "QEMU" listens.
            let vm = try FakeVM(listeningAt: path, mac: "52:54:00:ab:cd:09", ip: "198.18.0.12")
            let hostMAC = try #require(vm.resolve("198.18.0.1"), "\(d.log)")
            #expect(vm.ping("198.18.0.1", targetMAC: hostMAC, id: 7))
            vm.send(arpFrame(op: 1, srcMAC: vm.mac, srcIP: vm.ip, dstMAC: [0, 0, 0, 0, 0, 0], dstIP: bytes(ipv4: "198.18.0.1"),
                             ethSource: bytes(mac: "52:54:00:66:66:66")))
            #expect(d.stop() == 0)
            #expect(d.log.contains("handlers=source-guard,learning-switch"), "\(d.log)")
            let port = try #require(finalCounters(d.log)["labvm"])
            #expect(port.int("drop-spoofed") == 1 && port.int("tx-frames") >= 2, "\(port)")
        }
    }

    /// socket = "dgram": "QEMU" binds its socket (remote-path); tapbridge binds `path`, finds
    /// QEMU's socket and exchanges one frame per datagram. Socket file mode and group applied.
    @Test func dgramAttachment() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let ours = "/tmp/\(t.tag)-tb.sock", qemu = "/tmp/\(t.tag)-qemu.sock"
            t.onCleanup { unlink(qemu) }
            let q = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(q) }
            #expect(withUnixAddress(qemu) { bind(q, $0, $1) } == 0)
            var tv = timeval(tv_sec: 0, tv_usec: 500_000)
            setsockopt(q, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let d = try DaemonProcess(t, config: Self.attachment(t, h, extra: """
                socket = "dgram"
                remote-path = "\(qemu)"
                group = "1"
                socket-mode = "0640"
                """).toml.replacingOccurrences(of: "/tmp/\(t.tag)-vm0.sock", with: ours))
            #expect(withUnixAddress(ours) { connect(q, $0, $1) } == 0 || waitConnect(q, ours), "\(d.log)")
            var st = stat()
            #expect(lstat(ours, &st) == 0 && st.st_mode & 0o777 == 0o640 && st.st_gid == 1, "mode/group of \(ours)")
            let mac = bytes(mac: Self.vmMAC), ip = bytes(ipv4: "198.18.0.10"), target = bytes(ipv4: "198.18.0.1")
            var reply: [UInt8]?
            var buf = [UInt8](repeating: 0, count: 2048)
            for _ in 0..<10 where reply == nil {
                let req = arpFrame(op: 1, srcMAC: mac, srcIP: ip, dstMAC: [0, 0, 0, 0, 0, 0], dstIP: target)
                _ = req.withUnsafeBytes { send(q, $0.baseAddress, $0.count, 0) }
                let end = Date().addingTimeInterval(0.5)
                while Date() < end {
                    let n = recv(q, &buf, buf.count, 0)
                    guard n > 0 else { break }
                    let f = Array(buf[0..<n])
                    if f.count >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && Array(f[28..<32]) == target { reply = f; break }
                }
            }
            #expect(reply.map { Array($0[22..<28]) } == bytes(mac: h.macs[0]), "no ARP reply by datagram:\n\(d.log)")
            #expect(d.stop() == 0)
        }
    }

    /// SIGHUP adds a guarded vm port to a switch that already guards VM ports (guarded from its
    /// first frame), and refuses one for a bridge started without a source guard.
    @Test func vmPortAddedToASwitchBySIGHUP() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            func vmPort(_ n: Int) -> String {
                "[[bridges.ports]]\nname = \"p\(n)\"\nkind = \"vm\"\npath = \"/tmp/\(t.tag)-p\(n).sock\"\nmac = \"52:54:00:ab:cd:1\(n)\"\n"
            }
            func tap(_ i: Int) -> String {
                "[[bridges.ports]]\nname = \"\(h.macvtaps[i])\"\nparent = \"\(h.veths[i])\"\nmode = \"passthru\"\n"
            }
            let before = "[[bridges]]\nname = \"lab\"\n" + tap(0) + vmPort(1) + "[[bridges]]\nname = \"plain\"\n" + tap(1)
            let d = try DaemonProcess(t, config: before)
            let after = "[[bridges]]\nname = \"lab\"\n" + tap(0) + vmPort(1) + vmPort(2)
                + "[[bridges]]\nname = \"plain\"\n" + tap(1) + vmPort(3)
            try after.write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("info reloaded")
            #expect(d.log.contains("cannot add VM port with anti-spoofing") && d.log.contains("port=p3"), "\(d.log)")
            #expect(!FileManager.default.fileExists(atPath: "/tmp/\(t.tag)-p3.sock"))
            let vm = try FakeVM(path: "/tmp/\(t.tag)-p2.sock", mac: "52:54:00:ab:cd:12", ip: "198.18.0.12")
            vm.send(arpFrame(op: 1, srcMAC: vm.mac, srcIP: vm.ip, dstMAC: [0, 0, 0, 0, 0, 0], dstIP: bytes(ipv4: "198.18.0.1"),
                             ethSource: bytes(mac: "52:54:00:66:66:66")))
            #expect(vm.resolve("198.18.0.1") != nil, "\(d.log)")
            #expect(d.stop() == 0)
            let port = try #require(finalCounters(d.log)["p2"])
            #expect(port.int("drop-spoofed") == 1, "\(port)")
        }
    }

    @Test(.enabled(if: Guest.available, "qemu-system-x86_64 or the tools/build-guest guest is missing: QEMU end-to-end test skipped"))
    func qemuGuestThroughTheDaemonPingsTheLAN() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let (toml, socket) = Self.attachment(t, h, extra: "addresses = [\"198.18.0.10\"]")
            let d = try DaemonProcess(t, config: toml)
            let out = try Guest.boot(netdev: "stream,id=n0,server=off,addr.type=unix,addr.path=\(socket)", mac: Self.vmMAC,
                                     cmdline: "tb.ip=198.18.0.10/24 tb.peer=198.18.0.1 tb.test=ping", timeout: 60)
            #expect(out.contains("TAPBRIDGE-GUEST: PASS ping"), "\(out.suffix(600))\n\(d.log)")
            #expect(d.stop() == 0)
            let port = try #require(finalCounters(d.log)["vm0"])
            #expect(port.int("rx-frames") > 0 && port.int("tx-frames") > 0 && port.int("drop-spoofed-ipv4") <= 0, "\(port)")
        }
    }
}
