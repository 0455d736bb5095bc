// SocketFrontendSignalTests: the test front-end (TestSupport's SocketFrontend) survives a
// signal while it waits for a reply. Its socket has SO_RCVTIMEO, and Linux never restarts a
// receive with a timeout after a signal (SA_RESTART or not): a raw read(2) failed
// VhostUserPollingTests once with EINTR on a loaded CI machine. Reads now go through SystemCalls.
import Foundation
import Glibc
import Testing
import TestSupport
@testable import VhostUser

@Suite(.serialized) struct SocketFrontendSignalTests {
    /// Linux thread id of the caller (/proc/thread-self is "PID/task/TID").
    private static func threadID() -> Int32 {
        let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
        return Int32(link.split(separator: "/").last ?? "") ?? -1
    }

    /// Whether thread `tid` of this process is asleep (blocked in a system call).
    private static func isSleeping(_ tid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("S")
    }

    @Test func replyArrivingAfterSignalsIsRead() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0   // no SA_RESTART (it would not help a socket with SO_RCVTIMEO anyway)
        var old = sigaction()
        sigaction(SIGUSR2, &action, &old)
        defer { sigaction(SIGUSR2, &old, nil) }
        // The test runner's threads (libdispatch workers) block SIGUSR2: let it through here.
        var only = sigset_t(), oldMask = sigset_t()
        sigemptyset(&only); sigaddset(&only, SIGUSR2)
        pthread_sigmask(SIG_UNBLOCK, &only, &oldMask)
        defer { pthread_sigmask(SIG_SETMASK, &oldMask, nil) }

        var template = Array("/tmp/tbsig-XXXXXX".utf8CString)
        let dir = String(cString: try #require(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/be.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listener) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: Array(path.utf8).prefix($0.count - 1)) }
        let bound = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0 && listen(listener, 1) == 0)

        // The back-end: takes GET_FEATURES, waits until the front-end's thread sleeps in its
        // read, interrupts it twice (waiting each time until it sleeps again), then answers.
        let reader = pthread_self(), readerTID = Self.threadID()
        let signalsSent = Locked(0)
        let backend = Thread {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            let conn = VhostUserConnection(adopting: fd)
            guard let m = try? conn.receive() else { return }
            for _ in 0..<2 {
                guard pollUntil(10, { Self.isSleeping(readerTID) }) else { break }
                pthread_kill(reader, SIGUSR2)
                signalsSent.set(signalsSent.get() + 1)
                usleep(20_000)   // let the handler run; the wait above then sees the next sleep
            }
            try? conn.reply(request: m.header.request, payload: VhostUserEncoder.u64(0x1234))
            _ = try? conn.receive()   // until the front-end closes
        }
        backend.start()
        do {
            let fe = try SocketFrontend(path: path)
            let features = SocketFrontend.u64(try fe.request(.getFeatures))
            #expect(features == 0x1234)
        }
        #expect(signalsSent.get() == 2, "the front-end's read was interrupted twice")
    }
}
