// Every error a user can provoke reads as something they can act on, from the library and
// from `tapbridge link` (exit status 1 for operational errors, 2 for usage).
import Foundation
import Testing
import Frames
@testable import Netlink
import TestSupport

@Suite(.serialized) struct LinkErrorTests {
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    @Test func missingParent() throws {
        let m = try LinkManager()
        #expect(message { try m.create(LinkSpec(parent: "tbtnoparent9", name: "tbtmvt0")) }
                == "cannot create macvtap 'tbtmvt0' on 'tbtnoparent9': no such device (parent 'tbtnoparent9' not found)")
    }

    @Test func existingNameAndPassthruRule() throws {
        try withTopology { t in
            let lower = t.ifname("e0"), peer = t.ifname("e1"), a = t.ifname("pa"), b = t.ifname("pb")
            try t.addVeth(lower, peer)
            let m = try LinkManager()
            try m.create(LinkSpec(parent: lower, name: a, mode: .passthru)); t.track(link: a)
            #expect(message { try m.create(LinkSpec(parent: lower, name: a, mode: .passthru)) }
                    .hasPrefix("cannot create macvtap '\(a)' on '\(lower)': file exists"))
            let second = message { try m.create(LinkSpec(parent: lower, name: b, mode: .bridge)) }
            #expect(second.contains("mode 'passthru' allows one sub-interface per lower device"), "\(second)")
            #expect(second.contains("'\(a)' already owns '\(lower)'"))
        }
    }

    @Test func invalidInputCaughtBeforeTheKernel() throws {
        let m = try LinkManager()
        #expect(message { _ = try parseMAC("52:54:zz:00:00:01") }.contains("invalid MAC '52:54:zz:00:00:01'"))
        #expect(message { try m.create(LinkSpec(parent: "lo", name: "this-name-is-too-long")) }
                .contains("interface names are 1 to 15 bytes"))
        #expect(message { try m.create(LinkSpec(parent: "lo", name: "x", mode: .bridge, noPromisc: true)) }
                .contains("'nopromisc' applies to mode 'passthru' only"))
        #expect(message { try m.create(LinkSpec(parent: "lo", name: "x", mtu: 20)) }.contains("MTU 20 out of range"))
        #expect(message { try m.create(LinkSpec(parent: "lo", name: "x", address: .broadcast)) }.contains("invalid MAC"))
        #expect(message { try m.delete(name: "tbtnothere9") } == "cannot delete link 'tbtnothere9': no such device")
        #expect(message { _ = try LinkManager(namespace: .named("tbt-no-such-ns")) }.contains("does not exist"))
    }

    @Test func cliExitStatusesAndMessages() throws {
        let exe = tapbridgeExecutable()
        let missing = try run([exe, "link", "add", "link", "tbtnoparent9", "name", "tbtmvt0", "type", "macvtap"], check: false)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("cannot create macvtap 'tbtmvt0' on 'tbtnoparent9': no such device (parent 'tbtnoparent9' not found)"))
        let badMAC = try run([exe, "link", "add", "link", "lo", "type", "macvtap", "address", "52:54:zz:00:00:01"], check: false)
        #expect(badMAC.status == 2 && badMAC.stderr.contains("invalid MAC '52:54:zz:00:00:01'"))
        let badWord = try run([exe, "link", "add", "link", "lo", "type", "macvtap", "colour", "blue"], check: false)
        #expect(badWord.status == 2 && badWord.stderr.contains("unknown word 'colour'"))
    }

    @Test func unprivilegedCallerIsToldWhatIsMissing() throws {
        // A caller without CAP_NET_ADMIN (nobody, no capabilities) gets EPERM, explained.
        let exe = tapbridgeExecutable()
        let r = try run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                         exe, "link", "add", "link", "lo", "name", "tbtperm0", "type", "macvtap"], check: false)
        #expect(r.status == 1)
        #expect(r.stderr.contains("operation not permitted (needs CAP_NET_ADMIN)"), "\(r.stderr)")
    }
}
