// VxlanConfigTests: `kind = "vxlan"` ports: the keys parse into VxlanPortConfig (defaults: UDP
// 4789, learning on except with external remotes, macvtap "mv" + name), and each mistake the file
// alone shows is refused naming its key.
import Foundation
import Testing
@testable import Config

@Suite struct VxlanConfigTests {
    @Test func keysAndDefaults() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            [[bridges.ports]]
            name = "vx0"
            kind = "vxlan"
            vni = 42
            local = "198.19.0.1"
            underlay = "eth1"
            remotes = ["198.19.0.2", "198.19.0.3"]
            [[bridges.ports]]
            name = "vx1"
            kind = "vxlan"
            vni = 16777215
            local = "2001:db8::1"
            underlay = "eth1"
            group = "ff05::42"
            dstport = 8472
            mtu = 1400
            macvtap = "vxtap1"
            offloads = false
            [[bridges.ports]]
            name = "vx2"
            kind = "vxlan"
            vni = 7
            local = "198.19.0.1"
            underlay = "eth1"
            remotes = "external"
            """, file: "t.toml")
        let ports = c.bridges[0].ports
        let a = try #require(ports[0].vxlan), b = try #require(ports[1].vxlan), e = try #require(ports[2].vxlan)
        #expect(a.vni == 42 && a.local == "198.19.0.1" && a.underlay == "eth1" && a.dstport == 4789)
        #expect(a.remotes == .list(["198.19.0.2", "198.19.0.3"]) && a.learning && a.macvtap == "mvvx0" && a.offloads && a.mtu == nil)
        #expect(ports[0].hasLink && ports[0].create == nil && ports[0].kind.name == "vxlan")
        #expect(b.vni == 16777215 && b.remotes == .group("ff05::42") && b.dstport == 8472 && b.mtu == 1400)
        #expect(b.macvtap == "vxtap1" && !b.offloads && !ports[1].offloads && b.learning)
        #expect(e.remotes == .external && !e.learning, "an external control plane: the kernel does not learn by default")
        #expect(a.remotes.summary == "198.19.0.2,198.19.0.3" && b.remotes.summary == "group ff05::42")
    }

    @Test func mistakes() {
        let out = issues("""
            [[bridges]]
            [[bridges.ports]]
            name = "vx0"
            kind = "vxlan"
            local = "banana"
            underlay = "eth1"
            remotes = ["198.19.0.2", "198.19.0.2", "239.1.1.1", "2001:db8::2"]
            [[bridges.ports]]
            name = "vx1"
            kind = "vxlan"
            vni = 0
            local = "198.19.0.1"
            underlay = "eth1"
            remotes = ["198.19.0.1"]
            group = "198.19.0.9"
            [[bridges.ports]]
            name = "vx2"
            kind = "vxlan"
            vni = 3
            local = "198.19.0.1"
            [[bridges.ports]]
            name = "vx3"
            kind = "vxlan"
            vni = 3
            local = "198.19.0.1"
            underlay = "eth1"
            remotes = "everyone"
            macvtap = "vx3"
            parent = "eth0"
            """)
        #expect(out.contains("t.toml: bridges[0].ports[0].vni: required key is missing (the VXLAN network identifier, 1...16777215)"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].local: 'banana' is not an IPv4 or IPv6 address"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].remotes[1]: '198.19.0.2' is listed twice"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[0].remotes[2]: '239.1.1.1' is a multicast address: use 'group' for a multicast underlay"), "\(out)")
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[1].vni: 0 is out of range") }, "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].remotes[0]: '198.19.0.1' is this host's own 'local' address"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].group: set either 'remotes' or 'group', not both"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[1].group: '198.19.0.9' is not a multicast address"), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[2].underlay: required key is missing"), "\(out)")
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[2].remotes: required:") }, "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[3].remotes: expected an array of addresses or \"external\", found string \"everyone\""), "\(out)")
        #expect(out.contains("t.toml: bridges[0].ports[3].macvtap: must differ from the VXLAN device's name 'vx3'"), "\(out)")
        #expect(out.contains { $0.hasPrefix("t.toml: bridges[0].ports[3].parent:") }, "a macvtap key on a vxlan port is unknown: \(out)")
    }
}
