// ConfigHostTests: the checks a configuration gets against the host (namespaces, parents,
// existing links, VM socket paths, users and groups), with host facts from a table. The pure
// parsing checks are in Tests/ConfigTests.
import Foundation
import Testing
import Frames
@testable import Daemon

/// A host described by a table: links per namespace ("" is the daemon's own).
struct FakeHost: HostInspector {
    var namespaces: Set<String> = []
    var links: [String: [String: String]] = ["": ["eth0": "veth", "eth1": "veth"]]   // ns -> name -> kind
    var uppers: [String: [String]] = [:]
    func namespaceExists(_ name: String) -> Bool { namespaces.contains(name) }
    func link(named name: String, netns: String?) -> HostLink? {
        guard let kind = links[netns ?? ""]?[name] else { return nil }
        return HostLink(name: name, ifindex: 1, kind: kind)
    }
    func upperLinks(of parent: String) -> [String] { uppers[parent] ?? [] }
}

/// FakeHost's links with the real group database.
struct SystemHostGroups: HostInspector {
    let fake = FakeHost()
    func namespaceExists(_ name: String) -> Bool { fake.namespaceExists(name) }
    func link(named name: String, netns: String?) -> HostLink? { fake.link(named: name, netns: netns) }
    func upperLinks(of parent: String) -> [String] { fake.upperLinks(of: parent) }
    func groupExists(_ g: String) -> Bool { SystemHost().groupExists(g) }
}

/// Every problem `text` has when parsed and then checked against `host`.
func issues(_ text: String, host: HostInspector = FakeHost()) -> [String] {
    do {
        let c = try ConfigParser.parse(text, file: "t.toml", checks: .daemon)
        try ConfigValidator.validate(c, host: host)
        return []
    } catch let e as ConfigError {
        return e.issues.map(\.description)
    } catch {
        return ["unexpected: \(error)"]
    }
}

@Suite struct ConfigHostChecks {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/examples")

    /// Every docs/examples/*.toml is a configuration `tapbridge run --config` accepts (parsed,
    /// and validated against a host that has what the example's comments say it needs).
    @Test func everyExampleParses() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.examples.path).filter { $0.hasSuffix(".toml") }.sorted()
        #expect(files.contains("vm-attachment.toml") && files.contains("two-hosts.toml"))
        let host = FakeHost(links: ["": ["eth0": "veth", "veth-a": "veth", "veth-b": "veth"]])
        for f in files {
            let c = try ConfigParser.load(path: Self.examples.appendingPathComponent(f).path)
            #expect(!c.bridges.isEmpty, "\(f)")
            // Host checks that do not depend on users, groups or /run being there.
            var portable = c
            for i in portable.bridges.indices {
                portable.bridges[i].ports.removeAll { !$0.hasLink }
                for j in portable.bridges[i].ports.indices {
                    if case .tap(var tap) = portable.bridges[i].ports[j].kind {
                        tap.user = nil; tap.group = nil   // the example's VMM user and group
                        portable.bridges[i].ports[j].kind = .tap(tap)
                    }
                }
            }
            try ConfigValidator.validate(portable, host: host)
            // Issue 12 #14: every socket tapbridge creates is in the directory the systemd unit
            // leaves writable (ProtectSystem=strict: /run/tapbridge), so the example runs under it.
            for (_, p) in c.allPorts {
                guard let vm = p.vm, vm.socket != .streamClient else { continue }
                #expect(vm.path.hasPrefix(DaemonConfig.defaultStateDirectory + "/"), "\(f): \(p.name): \(vm.path)")
            }
        }
        let unit = try String(contentsOf: Self.examples.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/tapbridge.service"), encoding: .utf8)
        #expect(unit.contains("RuntimeDirectory=tapbridge\n") && unit.contains("ProtectSystem=strict\n"))
    }

    @Test func vmHostChecks() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/tbcfg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data())
        let out = issues("""
            [[vms]]
            name = "a"
            mac = "52:54:00:00:00:01"
            parent = "eth0"
            path = "\(dir)/file"
            owner = "no-such-user-tb"
            [[vms]]
            name = "b"
            mac = "52:54:00:00:00:02"
            parent = "eth9"
            path = "\(dir)/nodir/b.sock"
            group = "0"
            """)
        #expect(out.contains("t.toml: vms[0].path: '\(dir)/file' exists and is not a socket (tapbridge replaces only stale sockets)"), "\(out)")
        #expect(out.contains("t.toml: vms[0].owner: no user 'no-such-user-tb' on this host"))
        #expect(out.contains("t.toml: vms[1].path: directory '\(dir)/nodir' does not exist"))
        #expect(out.contains("t.toml: vms[1].parent: interface 'eth9' does not exist"))
        #expect(out.count == 4, "\(out)")
    }

    @Test func missingParentAndNamespace() {
        let out = issues("""
            [[bridges]]
            [[bridges.ports]]
            name = "mva"
            parent = "eth0"
            [[bridges.ports]]
            name = "mvb"
            parent = "eth9"
            [[bridges.ports]]
            name = "mvc"
            netns = "nowhere"
            """)
        #expect(out == [
            "t.toml: bridges[0].ports[1].parent: interface 'eth9' does not exist",
            "t.toml: bridges[0].ports[2].netns: network namespace 'nowhere' does not exist (no /run/netns/nowhere; create it with `ip netns add nowhere`)",
        ])
    }

    /// Issue 12 #12: `@anti-spoofing` judging a macvtap (or a vm port without `mac`) was a
    /// silent no-op; it is refused naming the port, and fine when `ports` lists guarded vm ports.
    @Test func antiSpoofingNeedsAssignedMACs() {
        let text = """
            [[bridges]]
            [bridges.filter]
            rules = ["count arp", "deny @anti-spoofing"]
            PORTS
            [[bridges.ports]]
            name = "mva"
            parent = "eth0"
            [[bridges.ports]]
            name = "vm0"
            kind = "vm"
            path = "/tmp/tbt-vm0.sock"
            mac = "52:54:00:00:00:01"
            [[bridges.ports]]
            name = "vm1"
            kind = "vm"
            path = "/tmp/tbt-vm1.sock"
            """
        let all = issues(text.replacingOccurrences(of: "PORTS", with: ""))
        #expect(all == ["t.toml: bridges[0].filter.rules[1]: @anti-spoofing checks a frame's source against the port's assigned MAC, and ports 'mva' (a macvtap), 'vm1' (a vm port without mac) have none (a macvtap's frames come from every host beyond its parent): list the guarded vm ports in filter.ports, or use '@block-mac MAC' or a pcap rule such as 'not ether src MAC' for the others"], "\(all)")
        #expect(issues(text.replacingOccurrences(of: "PORTS", with: "ports = [\"vm0\"]")) == [])
        #expect(issues(text.replacingOccurrences(of: "PORTS", with: "direction = \"egress\"\nports = [\"vm0\"]")) == [])
        #expect(issues(text.replacingOccurrences(of: "PORTS", with: "ports = [\"mva\", \"vm0\"]")).first?.contains("port 'mva' (a macvtap) has none") == true)
    }

    /// Issue 12 #13: the file's own problems and the host's are reported in one pass; a host
    /// problem of a port the file already got wrong is not added.
    @Test func fileAndHostProblemsInOnePass() throws {
        let (config, parseIssues) = ConfigParser.parseCollectingIssues("""
            [[bridges]]
            [[bridges.ports]]
            name = "mva"
            parent = "eth0"
            mdoe = "bridge"
            [[bridges.ports]]
            name = "mvb"
            parent = "eth9"
            [[bridges.ports]]
            name = "mvc"
            parent = "eth8"
            mode = "bridged"
            """, file: "t.toml")
        let all = ConfigProblems.all(try #require(config), parseIssues: parseIssues, host: FakeHost()).map(\.description)
        #expect(all == [
            "t.toml: bridges[0].ports[0].mdoe: unknown key (did you mean 'mode'?)",
            "t.toml: bridges[0].ports[2].mode: unknown mode 'bridged' (one of: private, vepa, bridge, passthru, source)",
            "t.toml: bridges[0].ports[1].parent: interface 'eth9' does not exist",
        ], "\(all)")
    }


    @Test func existingLinkChecks() {
        var host = FakeHost()
        host.links[""]!["mva"] = "macvtap"
        host.links[""]!["vx"] = "veth"
        host.uppers["eth1"] = ["mvq"]
        host.namespaces = ["g"]
        host.links["g"] = ["mvg": "macvtap"]
        let out = issues("""
            [[bridges]]
            [[bridges.ports]]
            name = "mva"
            parent = "eth0"
            [[bridges.ports]]
            name = "vx"
            [[bridges.ports]]
            name = "mvp"
            parent = "eth1"
            mode = "passthru"
            [[bridges.ports]]
            name = "mvg"
            netns = "g"
            [[bridges.ports]]
            name = "mvh"
            netns = "g"
            """, host: host)
        #expect(out == [
            "t.toml: bridges[0].ports[0].name: interface 'mva' already exists and is not what the port asks for (not compared on this host); delete it, or remove 'parent' to use the existing link as it is",
            "t.toml: bridges[0].ports[1].name: interface 'vx' is not a macvtap (it is a veth)",
            "t.toml: bridges[0].ports[2].parent: mode 'passthru' allows one sub-interface per lower device: 'eth1' already carries 'mvq'",
            "t.toml: bridges[0].ports[4].name: interface 'mvh' does not exist in namespace 'g' (set 'parent' to have the daemon create it)",
        ])
    }

    @Test func controlGroupMustExist() {
        let ports = "[[bridges]]\n[[bridges.ports]]\nname = \"m0\"\nparent = \"eth0\"\n"
        #expect(issues("[control]\ngroup = \"no-such-group-tbt\"\n" + ports, host: SystemHostGroups()) == ["t.toml: control.group: no group 'no-such-group-tbt' on this host"])
    }
}
