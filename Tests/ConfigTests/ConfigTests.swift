// ConfigTests: the TOML configuration is parsed into the right values, and every kind of mistake
// the file alone shows is refused with file, key path and reason. Pure: no kernel, no root (the
// host checks are in DaemonTests/ConfigHostTests.swift).
import Foundation
import Testing
import Frames
@testable import Config

/// Every problem `text` has, as `FILE: key.path: reason` lines (none: it parses).
func issues(_ text: String) -> [String] {
    do {
        _ = try ConfigParser.parse(text, file: "t.toml")
        return []
    } catch let e as ConfigError {
        return e.issues.map(\.description)
    } catch {
        return ["unexpected: \(error)"]
    }
}

/// docs/examples/NAME parsed.
func example(_ name: String) throws -> DaemonConfig {
    let path = ConfigParsing.examples.appendingPathComponent(name).path
    return try ConfigParser.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
}

@Suite struct ConfigParsing {
    @Test func fullConfigParses() throws {
        let c = try ConfigParser.parse("""
            log-level = "debug"
            workers = 2
            stats-interval = 5

            [[bridges]]
            name = "lan"
            pipeline = ["filter", "learning-switch"]
            [bridges.learning-switch]
            aging = 30
            capacity = 100
            static = [{ mac = "52:54:00:00:00:09", port = "mvb", vlan = 10 }]
            [bridges.filter]
            default = "drop"
            rules = ["accept arp", "accept ip"]
            direction = "egress"

            [[bridges.ports]]
            name = "mva"
            parent = "eth0"
            mode = "passthru"
            nopromisc = true
            mac = "52:54:00:00:00:01"
            queues = 2
            offloads = false
            vlan = "access"
            pvid = 10
            isolated = true

            [[bridges.ports]]
            name = "mvb"
            netns = "guest"
            allowed = [10, "20-22"]
            native = 1
            hairpin = true
            """, file: "t.toml")
        #expect(c.logLevel == .debug)
        #expect(c.workers == 2)
        #expect(c.statsInterval == 5)
        let b = try #require(c.bridges.first)
        #expect(b.name == "lan")
        #expect(b.pipeline.map(\.name) == ["filter", "learning-switch"])
        let ls = try #require(b.learningSwitch)
        #expect(ls.agingSeconds == 30 && ls.capacity == 100)
        #expect(ls.staticEntries == [StaticFDBEntry(mac: MACAddress("52:54:00:00:00:09")!, port: "mvb", vlan: 10)])
        guard let f = b.pipeline[0].settings as? FilterConfig else { Issue.record("no filter"); return }
        #expect(f.defaultAction == "drop" && f.rules == ["accept arp", "accept ip"])
        #expect(f.direction == "egress")
        #expect(f.path == "bridges[0].filter")

        let a = b.ports[0]
        #expect(a.name == "mva" && a.queues == 2 && !a.offloads && a.isolated && !a.hairpin)
        #expect(a.create?.parent == "eth0" && a.create?.mode == .passthru && a.create?.nopromisc == true)
        #expect(a.create?.mac == MACAddress("52:54:00:00:00:01"))
        #expect(a.vlan == .access(pvid: 10))

        let m = b.ports[1]
        #expect(m.create == nil && m.netns == "guest" && m.hairpin && m.offloads)
        #expect(m.vlan == .trunk(allowed: VLANSet([10, 20, 21, 22]), native: 1))
        #expect(m.path == "bridges[0].ports[1]")
    }

    @Test func defaults() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            [[bridges.ports]]
            name = "x"
            parent = "eth0"
            """, file: "t.toml")
        #expect(c.logLevel == .info && c.workers == nil && c.statsInterval == 0)
        #expect(c.bridges[0].name == "br0")
        #expect(c.bridges[0].pipeline.map(\.name) == ["learning-switch"])
        #expect(c.bridges[0].learningSwitch == LearningSwitchConfig())
        let p = c.bridges[0].ports[0]
        #expect(p.create?.mode == .bridge && p.queues == 1 && p.offloads && p.vlan == .unaware)
    }

    @Test func hubPipeline() throws {
        let c = try ConfigParser.parse("[[bridges]]\npipeline = []\n[[bridges.ports]]\nname = \"x\"\n", file: "t.toml")
        #expect(c.bridges[0].pipeline.isEmpty)
    }

    @Test func syntaxErrorNamesLine() {
        let out = issues("[[bridges]]\nname = \"a\n")
        #expect(out.count == 1)
        #expect(out.first?.hasPrefix("t.toml: line 2") == true)
    }

    @Test func duplicateKeyIsASyntaxError() {
        let out = issues("workers = 1\nworkers = 2\n")
        #expect(out.first?.hasPrefix("t.toml: line 2") == true)
    }

    @Test func unknownKeysAreRefusedWithSuggestion() {
        let out = issues("""
            log-levle = "info"
            [[bridges]]
            [[bridges.ports]]
            name = "x"
            paernt = "eth0"
            """)
        #expect(out.contains("t.toml: log-levle: unknown key (did you mean 'log-level'?)"))
        #expect(out.contains("t.toml: bridges[0].ports[0].paernt: unknown key (did you mean 'parent'?)"))
    }

    @Test func wrongTypes() {
        let out = issues("""
            workers = "two"
            [[bridges]]
            [[bridges.ports]]
            name = 5
            queues = 1.5
            offloads = "yes"
            """)
        #expect(out.contains("t.toml: workers: expected an integer, found string \"two\""))
        #expect(out.contains("t.toml: bridges[0].ports[0].name: expected a string, found integer 5"))
        #expect(out.contains("t.toml: bridges[0].ports[0].queues: expected an integer, found number 1.5"))
        #expect(out.contains("t.toml: bridges[0].ports[0].offloads: expected true or false, found string \"yes\""))
    }

    @Test func badValues() {
        let out = issues("""
            log-level = "loud"
            workers = 0
            [[bridges]]
            pipeline = ["learning-swich"]
            [[bridges.ports]]
            name = "averyveryverylongname"
            parent = "eth0"
            mode = "bridged"
            mac = "52:54:zz:00:00:01"
            [[bridges.ports]]
            name = "y"
            parent = "eth1"
            mac = "01:00:5e:00:00:01"
            vlan = "access"
            """)
        #expect(out.contains { $0.hasPrefix("t.toml: log-level: unknown level 'loud'") })
        #expect(out.contains("t.toml: workers: 0 is out of range 1...64"))
        // (other tests may register kinds of their own: the list starts with the bundled ones)
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].pipeline[0]: unknown handler 'learning-swich' (one of: learning-switch, filter")
                               && $0.hasSuffix(") (did you mean 'learning-switch'?)") })
        #expect(out.contains("t.toml: bridges[0].ports[0].name: interface name 'averyveryverylongname' is longer than 15 characters"))
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[0].mode: unknown mode 'bridged'") })
        #expect(out.contains("t.toml: bridges[0].ports[0].mac: invalid MAC '52:54:zz:00:00:01' (expected six hex octets like 52:54:00:12:34:56)"))
        #expect(out.contains("t.toml: bridges[0].ports[1].mac: invalid MAC '01:00:5e:00:00:01': multicast bit set (first octet must be even)"))
        #expect(out.contains("t.toml: bridges[0].ports[1].pvid: required with vlan = 'access'"))
    }

    @Test func conflictsAndDuplicates() {
        let out = issues("""
            [[bridges]]
            name = "a"
            [bridges.learning-switch]
            static = [{ mac = "52:54:00:00:00:05", port = "nope" }]
            [[bridges.ports]]
            name = "x"
            parent = "eth0"
            mode = "bridge"
            nopromisc = true
            mac = "52:54:00:00:00:01"
            [[bridges.ports]]
            name = "x"
            parent = "eth0"
            mode = "passthru"
            mac = "52:54:00:00:00:01"
            [[bridges.ports]]
            name = "z"
            mode = "vepa"
            pvid = 3
            allowed = [4]
            [[bridges]]
            name = "a"
            """)
        #expect(out.contains("t.toml: bridges[0].ports[0].nopromisc: only with mode 'passthru' (mode is 'bridge')"))
        #expect(out.contains("t.toml: bridges[0].ports[1].name: port 'x' already declared at bridges[0].ports[0]"))
        #expect(out.contains("t.toml: bridges[0].ports[1].mac: MAC 52:54:00:00:00:01 already used at bridges[0].ports[0]"))
        #expect(out.contains("t.toml: bridges[0].ports[1].parent: mode 'passthru' allows one sub-interface per lower device: 'eth0' is already used at bridges[0].ports[0]"))
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[2].mode: only for a macvtap the daemon creates") })
        #expect(out.contains("t.toml: bridges[0].ports[2].allowed: not used with vlan = 'access' (that is a trunk key)"))
        #expect(out.contains("t.toml: bridges[1].name: bridge 'a' already declared at bridges[0]"))
        #expect(out.contains("t.toml: bridges[0].learning-switch.static[0].port: no port named 'nope' in bridge 'a'"))
    }

    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/examples")

    @Test func exampleConfigParses() throws {
        let c = try example("two-hosts.toml")
        #expect(c.bridges.count == 1 && c.bridges[0].ports.map(\.name) == ["mvt-a", "mvt-b"])
        #expect(c.bridges[0].ports.allSatisfy { $0.create?.mode == .passthru })
    }

    @Test func vmAttachmentExampleExpands() throws {
        let c = try example("vm-attachment.toml")
        let web = try #require(c.bridges.first { $0.name == "vm-web" })
        #expect(web.isVMAttachment && web.pipeline.isEmpty && web.path == "vms[0]")
        #expect(web.ports.map(\.name) == ["web", "mvweb"])
        let vm = try #require(web.ports[0].vm)
        #expect(vm.socket == .streamServer && vm.path == "/run/tapbridge/web.sock" && vm.group == "kvm" && vm.socketMode == 0o660)
        #expect(vm.mac == MACAddress("52:54:00:12:34:56") && vm.antiSpoofing && vm.addresses == ["198.18.0.10", "2001:db8::10"])
        let tap = try #require(web.ports[1].create)
        #expect(tap.parent == "eth0" && tap.mode == .bridge && tap.mac == vm.mac && !web.ports[1].offloads)
        #expect(Set(web.sourceGuards.keys) == ["web"])
        let db = try #require(c.bridges.first { $0.name == "vm-db" })
        #expect(db.ports[0].vm?.socket == .dgram && db.ports[0].vm?.remotePath == "/run/qemu/db.sock" && db.ports[1].name == "mvdb0")
        let lab = try #require(c.bridges.first { $0.name == "lab" })
        #expect(lab.ports[0].vm?.socket == .streamClient && lab.learningSwitch != nil && Set(lab.sourceGuards.keys) == ["lab-vm"])
    }

    @Test func vmMistakes() {
        let out = issues("""
            [[vms]]
            name = "a"
            parent = "eth0"
            path = "/tmp/a.sock"
            socket = "stream-srv"
            [[vms]]
            name = "b"
            mac = "52:54:00:00:00:02"
            parent = "eth0"
            path = "/tmp/a.sock"
            remote-path = "/tmp/q.sock"
            addresses = ["198.18.0.300"]
            socket-mode = "999"
            [[vms]]
            name = "a-very-long-vm-name"
            mac = "52:54:00:00:00:02"
            parent = "eth0"
            socket = "stream-client"
            path = "relative.sock"
            owner = "root"
            [[bridges]]
            [[bridges.ports]]
            name = "v"
            kind = "vm"
            path = "/tmp/v.sock"
            parent = "eth0"
            anti-spoofing = true
            [[bridges.ports]]
            name = "w"
            kind = "vmm"
            """)
        #expect(out.contains("t.toml: vms[0].mac: required key is missing"), "\(out)")
        #expect(out.contains("t.toml: vms[0].socket: unknown socket mode 'stream-srv' (one of: stream-server, stream-client, dgram) (did you mean 'stream-server'?)"))
        #expect(out.contains("t.toml: vms[1].remote-path: only with socket = 'dgram'"))
        #expect(out.contains { $0.hasPrefix("t.toml: vms[1].addresses[0]: invalid IP address '198.18.0.300'") })
        #expect(out.contains { $0.hasPrefix("t.toml: vms[1].socket-mode: expected permission bits") })
        #expect(out.contains("t.toml: vms[1].path: socket '/tmp/a.sock' already used at vms[0].path"))
        #expect(out.contains("t.toml: vms[2].mac: MAC 52:54:00:00:00:02 already used at vms[1]"))
        #expect(out.contains("t.toml: vms[2].macvtap: default name: interface name 'mva-very-long-vm-name' is longer than 15 characters; set 'macvtap'"))
        #expect(out.contains("t.toml: vms[2].owner: not used with socket = 'stream-client' (QEMU creates that socket file)"))
        #expect(out.contains("t.toml: bridges[0].ports[0].parent: not used by a vm port (kind = 'vm'); it is a macvtap setting"))
        #expect(out.contains("t.toml: bridges[0].ports[0].anti-spoofing: needs 'mac' (the MAC the VM is assigned)"))
        #expect(out.contains("t.toml: bridges[0].ports[1].kind: unknown port kind 'vmm' (one of: macvtap, vm, tap, host, vhost-user, vxlan) (did you mean 'vm'?)"))
    }

    /// Issue 12 #3: static entries have a configurable bound (`max-static`).
    @Test func staticEntriesAreBoundedByMaxStatic() throws {
        let text = """
            [[bridges]]
            name = "a"
            [bridges.learning-switch]
            max-static = 1
            static = [{ mac = "52:54:00:00:00:05", port = "x" }, { mac = "52:54:00:00:00:06", port = "x" }]
            [[bridges.ports]]
            name = "x"
            parent = "eth0"
            """
        #expect(issues(text) == ["t.toml: bridges[0].learning-switch.static: 2 static entries, more than max-static (1)"])
        let ok = try ConfigParser.parse(text.replacingOccurrences(of: "max-static = 1", with: "max-static = 2"), file: "t.toml")
        #expect(ok.bridges[0].learningSwitch?.maxStatic == 2)
        #expect(try ConfigParser.parse("[[bridges]]\n[[bridges.ports]]\nname = \"x\"\n", file: "t.toml").bridges[0].learningSwitch?.staticLimit == 1024)
        #expect(issues(text.replacingOccurrences(of: "max-static = 1", with: "capacity = 100\nmax-static = 51")).contains(
            "t.toml: bridges[0].learning-switch.max-static: 51 is more than half of capacity (100): static entries would crowd out learned ones"))
    }

    /// Issue 12 #9: names and paths with control characters (a newline, a bidi override) are
    /// refused naming the key; a key made of them is shown escaped.
    @Test func controlCharactersAreRefused() {
        let out = issues(#"""
            [[bridges]]
            name = "lan\u202E"
            [[bridges.ports]]
            name = "mv\u0007a"
            parent = "eth0"
            [[bridges.ports]]
            name = "vm0"
            kind = "vm"
            path = "/run/tapbridge/vm\n.sock"
            mac = "52:54:00:00:00:01"
            "bad\u001bkey" = 1
            """#)
        #expect(out.contains("t.toml: bridges[0].name: the value contains a control character (U+202E at offset 3); names and paths may not"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].name: the value contains a control character (U+0007 at offset 2); names and paths may not"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].path: the value contains a control character (U+000A at offset 17); names and paths may not"), "\(out)")
        #expect(out.contains { $0.hasPrefix(#"t.toml: bridges[0].ports[1].bad\x1bkey: unknown key"#) }, "\(out)")
        #expect(!out.joined().unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x202E }, "\(out)")
    }

    @Test func noBridges() {
        #expect(issues("workers = 1\n") == ["t.toml: bridges: no bridge declared (add a [[bridges]] table with [[bridges.ports]], or a [[vms]] table)"])
    }
}

@Suite struct ConfigRuleChecks {
    @Test func filterDirectionMustBeKnown() {
        let out = issues("""
            [[bridges]]
            [bridges.filter]
            direction = "sideways"
            [[bridges.ports]]
            name = "m"
            parent = "eth0"
            """)
        #expect(out == ["t.toml: bridges[0].filter.direction: must be 'ingress', 'egress' or 'both', not 'sideways'"])
    }

    @Test func badFilterRulesAreRefusedByPosition() {
        let out = issues("""
            [[bridges]]
            [bridges.filter]
            rules = ["deny tcp dst port 22", "permit arp", "deny tcp dst prot 22", "mirror nowhere udp", "deny @no-such-guard", "limit fast udp"]
            ports = ["m", "ghost"]
            [[bridges.ports]]
            name = "m"
            parent = "eth0"
            """)
        #expect(out.count == 6, "\(out)")
        #expect(out.contains("t.toml: bridges[0].filter.rules[1]: unknown action 'permit' (allow, deny, count, mirror PORT, limit RATE)"))
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].filter.rules[2]: \"tcp dst prot 22\": ") })
        #expect(out.contains("t.toml: bridges[0].filter.rules[3]: mirror port 'nowhere' is not a port of bridge 'bridge0'")
                || out.contains { $0.hasPrefix("t.toml: bridges[0].filter.rules[3]: mirror port 'nowhere'") })
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].filter.rules[4]: unknown built-in '@no-such-guard'") })
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].filter.rules[5]: rate 'fast' not understood") })
        #expect(out.contains("t.toml: bridges[0].filter.ports: 'ghost' is not a port of bridge 'bridge0'")
                || out.contains { $0.hasPrefix("t.toml: bridges[0].filter.ports: 'ghost'") })
    }


}

@Suite struct PortKindsAndRegistry {
    @Test func vhostUserPortsAndAttachments() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            name = "lan"
            [[bridges.ports]]
            name = "mva"
            [[bridges.ports]]
            name = "guest"
            kind = "vhost-user"
            path = "/run/g.sock"
            group = "kvm"
            mac = "52:54:00:00:00:07"
            [[bridges.ports]]
            name = "pmd"
            kind = "vhost-user"
            mode = "client"
            path = "/run/pmd.sock"
            offloads = false
            queues = 2
            [[vms]]
            name = "ch"
            socket = "vhost-user"
            path = "/run/ch.sock"
            mac = "52:54:00:00:00:08"
            parent = "eth0"
            """, file: "t.toml")
        let ports = c.bridges[0].ports
        let g = try #require(ports[1].vhostUser), p = try #require(ports[2].vhostUser)
        #expect(ports[1].kind.name == "vhost-user" && !ports[1].hasLink && ports[1].queues == 1 && ports[1].offloads)
        #expect(g.mode == .server && g.guest.path == "/run/g.sock" && g.guest.group == "kvm" && g.guest.socket == .streamServer)
        #expect(g.guest.mac == MACAddress("52:54:00:00:00:07") && g.guest.antiSpoofing)
        #expect(p.mode == .client && p.guest.socket == .streamClient && !p.offloads && !ports[2].offloads)
        #expect(p.queues == 2 && ports[2].queues == 2, "queue pairs offered (multi-queue)")
        #expect(Set(c.bridges[0].sourceGuards.keys) == ["guest"])
        let ch = try #require(c.bridges.first { $0.name == "vm-ch" })
        #expect(ch.ports[0].vhostUser?.guest.path == "/run/ch.sock" && ch.ports[1].offloads && ch.ports[1].create?.mac == MACAddress("52:54:00:00:00:08"))
        #expect(Set(ch.sourceGuards.keys) == ["ch"])

        let out = issues("""
            [[bridges]]
            [[bridges.ports]]
            name = "a"
            kind = "vhost-user"
            mode = "listen"
            queues = 17
            netns = "x"
            [[bridges.ports]]
            name = "b"
            kind = "vhost-user"
            mode = "client"
            path = "/run/b.sock"
            owner = "root"
            anti-spoofing = true
            [[bridges.ports]]
            name = "c"
            kind = "vhost-user"
            path = "/run/b.sock"
            """)
        #expect(out.contains("t.toml: bridges[0].ports[0].path: required key is missing"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].mode: unknown vhost-user mode 'listen' (one of: server, client)"))
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[0].queues:") && $0.contains("16") }, "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].netns: not used by a vhost-user port (kind = 'vhost-user'); it is a macvtap setting"))
        #expect(out.contains("t.toml: bridges[0].ports[1].owner: not used with mode = 'client' (the VMM creates that socket file)"))
        #expect(out.contains("t.toml: bridges[0].ports[1].anti-spoofing: needs 'mac' (the MAC the VM is assigned)"))
        #expect(out.contains("t.toml: bridges[0].ports[2].path: socket '/run/b.sock' already used at bridges[0].ports[1].path"))
    }

    @Test func tapAndHostPorts() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            [[bridges.ports]]
            name = "fc0"
            kind = "tap"
            user = "firecracker"
            group = 107
            queues = 2
            mac = "52:54:00:00:00:08"
            addresses = ["198.18.0.8"]
            pvid = 10
            [[bridges.ports]]
            name = "tbhost0"
            kind = "host"
            addresses = ["198.18.0.254/24", "2001:db8::fe/64"]
            mtu = 9000
            [[vms]]
            name = "ch"
            tap = "chtap"
            mac = "52:54:00:00:00:09"
            parent = "eth0"
            """, file: "t.toml")
        let ports = c.bridges[0].ports
        let tap = try #require(ports[0].tap), host = try #require(ports[1].host)
        #expect(tap.user == "firecracker" && tap.group == "107" && tap.queues == 2 && tap.macvtap == "mtfc0" && tap.offloads)
        #expect(ports[0].vlan == .access(pvid: 10) && ports[0].hasLink && ports[0].create == nil)
        #expect(host.addresses == ["198.18.0.254/24", "2001:db8::fe/64"] && host.mtu == 9000 && ports[1].hasLink)
        #expect(Set(c.bridges[0].sourceGuards.keys) == ["fc0"])
        let vm = try #require(c.bridges.first { $0.name == "vm-ch" })
        let vmTap = try #require(vm.ports[0].tap)
        #expect(vm.ports[0].name == "chtap" && vmTap.mac == MACAddress("52:54:00:00:00:09") && vmTap.macvtap == "mtchtap")
        #expect(vm.ports[1].create?.mac == MACAddress("52:54:00:00:00:09") && vm.ports[1].offloads, "the LAN macvtap carries GSO to a tap VM")
        #expect(Set(vm.sourceGuards.keys) == ["chtap"])
    }

    @Test func tapAndHostMistakes() {
        let out = issues("""
            [[bridges]]
            [[bridges.ports]]
            name = "fc0"
            kind = "tap"
            queues = 17
            anti-spoofing = true
            path = "/tmp/x.sock"
            [[bridges.ports]]
            name = "h0"
            kind = "host"
            addresses = ["198.18.0.254", "198.18.0.1/33", "banana/8"]
            [[bridges.ports]]
            name = "h1"
            kind = "host"
            [[bridges.ports]]
            name = "a-long-tap-name"
            kind = "tap"
            [[vms]]
            name = "v"
            tap = "vtap"
            mac = "52:54:00:00:00:0a"
            parent = "eth0"
            path = "/tmp/v.sock"
            """)
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[0].queues:") }, "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].anti-spoofing: needs 'mac' (the MAC the VM is assigned)"), "\(out)")
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[0].path:") }, "an unknown key for a tap port: \(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].addresses[0]: '198.18.0.254' is not ADDRESS/PREFIX (e.g. 198.18.0.254/24)"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].addresses[1]: prefix length '33' is not 0–32"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].addresses[2]: 'banana' is not an IPv4 or IPv6 address"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[2].kind: at most one host port per bridge ('h0' is one already)"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[3].macvtap: default name: interface name 'mta-long-tap-name' is longer than 15 characters; set 'macvtap'"), "\(out)")
        #expect(out.contains("t.toml: vms[0].path: not used with 'tap' (the VM attaches to the tap, not to a socket)"), "\(out)")
    }

    @Test func portKindsCarryTheirOwnKeys() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            [[bridges.ports]]
            name = "mva"
            parent = "eth0"
            queues = 2
            [[bridges.ports]]
            name = "guest"
            kind = "vm"
            path = "/run/g.sock"
            mac = "52:54:00:00:00:07"
            """, file: "t.toml")
        let ports = c.bridges[0].ports
        guard case .macvtap(let m) = ports[0].kind, case .vm(let vm) = ports[1].kind else {
            Issue.record("kinds: \(ports.map(\.kind.name))"); return
        }
        #expect(m.queues == 2 && m.create?.parent == "eth0" && ports[0].hasLink)
        #expect(vm.path == "/run/g.sock" && vm.mac == MACAddress("52:54:00:00:00:07") && !ports[1].hasLink && ports[1].netns == nil)
        #expect(Set(c.bridges[0].sourceGuards.keys) == ["guest"])
    }

    @Test func bundledKindsAreRegistered() {
        #expect(Array(HandlerRegistry.names.prefix(2)) == ["learning-switch", "filter"])
        #expect(throws: HandlerRegistry.RegistrationError.self) {
            try HandlerRegistry.register(HandlerKind(name: "filter", parse: { _ in Marker() }, make: { _, _ in MarkerHandler() }))
        }
        #expect(throws: HandlerRegistry.RegistrationError.self) {
            try HandlerRegistry.register(HandlerKind(name: "Bad Name", parse: { _ in Marker() }, make: { _, _ in MarkerHandler() }))
        }
        #expect(throws: HandlerRegistry.RegistrationError.self) {
            try HandlerRegistry.register(HandlerKind(name: "ports", parse: { _ in Marker() }, make: { _, _ in MarkerHandler() }))
        }
    }

    /// A kind registered from outside: named in a pipeline, its table read by its own parser,
    /// its mistakes reported at their key paths, its bridge-wide check run, its handler made.
    @Test func aRegisteredKindJoinsPipelinesWithItsOwnKeys() throws {
        try? HandlerRegistry.register(HandlerKind(
            name: "tbt-marker",
            parse: { keys -> Marker in
                var m = Marker()
                if let n = keys.int("level", in: 0...9) { m.level = n }
                if let p = keys.string("port") { m.port = p }
                return m
            },
            check: { m, setup, issues in
                if let p = m.port, !setup.bridge.ports.contains(where: { $0.name == p }) {
                    issues.add(setup.path + ".port", "no port '\(p)'")
                }
            },
            make: { m, _ in MarkerHandler(level: m.level) }))
        let ok = try ConfigParser.parse("""
            [[bridges]]
            pipeline = ["tbt-marker", "learning-switch"]
            [bridges.tbt-marker]
            level = 3
            [[bridges.ports]]
            name = "x"
            """, file: "t.toml")
        let stage = try #require(ok.bridges[0].pipeline.first)
        #expect(stage.name == "tbt-marker" && stage.path == "bridges[0].tbt-marker")
        #expect(ok.bridges[0].settings(Marker.self) == Marker(level: 3))
        let running = try #require(HandlerRegistry.kind(named: "tbt-marker")).instantiate(stage, bridge: ok.bridges[0])
        #expect((running.handler as? MarkerHandler)?.level == 3 && !running.canReload)

        let out = issues("""
            [[bridges]]
            pipeline = ["tbt-marker"]
            [bridges.tbt-marker]
            level = 12
            port = "ghost"
            colour = "red"
            [[bridges.ports]]
            name = "x"
            """)
        #expect(out.contains("t.toml: bridges[0].tbt-marker.level: 12 is out of range 0...9"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].tbt-marker.colour: unknown key"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].tbt-marker.port: no port 'ghost'"), "\(out)")
        #expect(issues("[[bridges]]\n[bridges.tbt-marker]\n[[bridges.ports]]\nname = \"x\"\n").first?
            .hasPrefix("t.toml: bridges[0].tbt-marker: configured but not in bridges[0].pipeline") == true)
    }
}

struct Marker: HandlerSettings, Equatable {
    var level = 0
    var port: String?
}

final class MarkerHandler: FrameHandler {
    let name = "tbt-marker"
    let level: Int
    init(level: Int = 0) { self.level = level }
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict { .continue }
}
