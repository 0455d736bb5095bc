// LinkAddresses on the real kernel: addresses on a link in a namespace, IPv6 address generation
// switched off (no link-local address, so no ND/MLD from the host stack), address parsing.
import Netlink
import Testing
import TestSupport

@Suite struct LinkAddressTests {
    @Test func addressesAndIPv6SwitchOff() throws {
        try withTopology { t in
            let ns = try t.addNamespace("ad")
            let a = t.ifname("aa"), b = t.ifname("ab")
            try t.addVeth(a, b)
            try t.move(b, to: ns, up: false)
            let m = try LinkManager(namespace: .named(ns))
            try m.disableIPv6AddressGeneration(name: b)
            try m.addAddress(try #require(InterfaceAddress("198.18.7.1/24")), to: b)
            try m.addAddress(try #require(InterfaceAddress("2001:db8::7/64")), to: b)
            try m.set(name: b, up: true)
            let out = try t.exec(ns, ["ip", "-d", "addr", "show", b]).stdout
            let link = try t.exec(ns, ["ip", "-d", "link", "show", b]).stdout
            #expect(link.contains("addrgenmode none"), "\(link)")
            #expect(out.contains("inet 198.18.7.1/24"), "\(out)")
            #expect(out.contains("inet6 2001:db8::7/64"), "\(out)")
            #expect(!out.contains("fe80::"), "no link-local address: \(out)")
            #expect(InterfaceAddress("198.18.7.1/33") == nil)
            #expect(InterfaceAddress("198.18.7.1/+3") == nil)
            #expect(InterfaceAddress("nonsense") == nil)
            #expect(InterfaceAddress("198.18.7.1")?.description == "198.18.7.1/32")
        }
    }
}
