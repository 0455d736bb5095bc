// TunDevice on the real kernel: persistent taps with owner/group (the kernel refuses anyone
// else, checked by attaching as other uids through setpriv), queue flags that must match, a
// host tap that lives exactly as long as its port holds it.
import Foundation
import Tap
import Testing
import TestSupport
@testable import Datapath

@Suite struct TunDeviceTests {
    @Test func persistentTapOwnerIsEnforcedByTheKernel() throws {
        try withTopology { t in
            let name = t.ifname("tap")
            try TunDevice.createPersistent(TapCreation(name: name, owner: 65534))
            t.track(link: name)
            let details = try run(["ip", "-d", "link", "show", name]).stdout
            #expect(details.contains("persist on"), "\(details)")
            #expect(details.contains("user nobody") || details.contains("user 65534"), "\(details)")
            #expect(!details.contains("multi_queue"), "\(details)")
            // The owner may attach; another unprivileged uid is refused by the kernel.
            #expect(try attachAs(uid: 65534, gid: 65534, tap: name) == "ok")
            #expect(try attachAs(uid: 4242, gid: 4242, tap: name) == "EPERM")
            // Deleting: the tap goes once no queue holds it (the last file of it is released;
            // a child being spawned by another test may hold a copy until it execs: wait).
            try TunDevice.deletePersistent(name: name, multiQueue: false)
            #expect(waitLinkGone(name), "TUNSETPERSIST(0) deletes the tap")
        }
    }

    @Test func groupLetsItsMembersAttach() throws {
        try withTopology { t in
            let name = t.ifname("tg")
            try TunDevice.createPersistent(TapCreation(name: name, multiQueue: true, group: 4343))
            t.track(link: name)
            #expect(try attachAs(uid: 4242, gid: 4343, tap: name, multiQueue: true) == "ok")
            #expect(try attachAs(uid: 4242, gid: 4242, tap: name, multiQueue: true) == "EPERM")
            // A VMM must ask for the same queue mode as the tap was made with.
            #expect(try attachAs(uid: 4242, gid: 4343, tap: name, multiQueue: false) == "EINVAL")
            // rtnetlink deletes a tap like any link (the daemon's way).
            try run(["ip", "link", "del", name])
            #expect(!TunDevice.exists(name))
        }
    }

    @Test func namesAndUsersAreChecked() throws {
        try withTopology { t in
            let a = t.ifname("xa"), b = t.ifname("xb")
            try t.addVeth(a, b)
            #expect(throws: TapError.self) { try TunDevice.createPersistent(TapCreation(name: a)) }
            #expect(throws: TapError.self) { try TunDevice.openQueue(name: a, create: true) }
            #expect(throws: TapError.self) { try TunDevice.createPersistent(TapCreation(name: "sixteen-chars-xx")) }
            #expect(TunDevice.userID("nobody") == 65534)
            #expect(TunDevice.userID("1234") == 1234)
            #expect(TunDevice.userID("no-such-user-tbt") == nil)
            #expect(TunDevice.groupID("nogroup") == 65534)
        }
    }

    @Test func hostTapLivesExactlyAsLongAsItsPort() throws {
        try withTopology { t in
            let name = t.ifname("h0")
            let port = try TapPort(creating: name)
            t.track(link: name)
            #expect(TunDevice.exists(name))
            let details = try run(["ip", "-d", "link", "show", name]).stdout
            #expect(details.contains("persist off") && details.contains("multi_queue"), "\(details)")
            // The anchor queue is out of transmit hashing; queues the engine opens come and go.
            let fd = try #require(try port.openQueue(0))
            #expect(try run(["ip", "-d", "link", "show", name]).stdout.contains("numqueues 1 numdisabled 1"))
            close(fd)
            port.descriptorsClosed()
            #expect(TunDevice.exists(name), "closing the engine's queues keeps the tap")
            try port.setReceiveOffloads(.all)
            #expect(port.receiveOffloads.contains(.tso4))
            port.release()
            #expect(!port.holdsInterface)
            // The kernel deletes the tap when the anchor's file is released: at our close() unless
            // a child that another test is spawning still holds a copy until it execs (wait).
            #expect(waitLinkGone(name), "releasing the anchor deletes the tap")
        }
    }
}
