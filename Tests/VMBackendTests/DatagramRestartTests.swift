// DatagramRestartTests: a restarted QEMU `-netdev dgram` end connects its new socket to our path
// while our previous socket still holds it; the kernel then refuses our connect to QEMU (EPERM)
// until QEMU's socket finds that peer gone. That is a wait, not a failure: openQueue reports "not
// yet" (nil), keeps its socket bound so QEMU's sends reach it, and connects on the next pass.
// Issue 12 #11: this used to throw and log `reconnect failed ... Operation not permitted`.
import Foundation
import Glibc
import Testing
import TestSupport
import UnixSocketFiles
@testable import VMBackend

@Suite struct DatagramRestartTests {
    @Test func restartedQEMUIsAWaitNotAFailure() throws {
        let base = FileManager.default.temporaryDirectory.path + "/tbt-dg-\(UInt32.random(in: 0...UInt32.max))"
        let ours = base + "-tb.sock", qemu = base + "-qemu.sock"
        defer { unlink(ours); unlink(qemu) }
        func dgram() -> Int32 { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0) }
        func bindTo(_ fd: Int32, _ path: String) -> Int32 { (try? UnixAddress.with(path) { bind(fd, $0, $1) }) ?? -1 }
        func connectTo(_ fd: Int32, _ path: String) -> Int32 { (try? UnixAddress.with(path) { connect(fd, $0, $1) }) ?? -1 }

        // QEMU's first run, and our port connected to it (QEMU connects back to our path).
        let q1 = dgram()
        #expect(bindTo(q1, qemu) == 0)
        let port = VMDatagramPort(name: "vm0", localPath: ours, remotePath: qemu)
        let fd1 = try #require(try port.openQueue(0))
        #expect(connectTo(q1, ours) == 0)

        // QEMU restarts: our socket's peer is gone (our next send says so and forgets it), and
        // the new QEMU socket connects to our path, i.e. to our old socket.
        close(q1)
        // (released once no process holds it: a child being spawned elsewhere may, until it execs)
        #expect(waitUnixSocketGone(qemu))
        var byte: UInt8 = 1
        #expect(send(fd1, &byte, 1, 0) < 0 && errno == ECONNREFUSED)
        let q2 = dgram()
        defer { close(q2) }
        // (bound beside and renamed over the old file, so the inode surely differs)
        #expect(bindTo(q2, qemu + ".new") == 0 && rename(qemu + ".new", qemu) == 0 && connectTo(q2, ours) == 0)
        #expect(port.wantsReconnect(), "the new inode at QEMU's path is seen")

        // The engine's reconnect: the old descriptor goes, a new one is asked for.
        close(fd1)
        port.descriptorsClosed()
        #expect(try port.openQueue(0) == nil, "EPERM while QEMU's socket still points at our old one is a wait")
        #expect(port.wantsReconnect())
        // QEMU's next send finds its peer gone; then our connect succeeds, on the same bound socket.
        #expect(send(q2, &byte, 1, 0) < 0 && errno == ECONNREFUSED)
        let fd2 = try #require(try port.openQueue(0))
        defer { close(fd2) }
        #expect(!port.wantsReconnect())
        // Frames flow both ways again.
        #expect(connectTo(q2, ours) == 0)
        #expect(send(q2, &byte, 1, 0) == 1)
        var got: UInt8 = 0
        #expect(recv(fd2, &got, 1, Int32(MSG_DONTWAIT)) == 1 && got == 1)
        #expect(send(fd2, &byte, 1, 0) == 1)
        #expect(recv(q2, &got, 1, Int32(MSG_DONTWAIT)) == 1)
    }
}
