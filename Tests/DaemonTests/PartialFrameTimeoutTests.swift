// PartialFrameTimeoutTests: `partial-frame-timeout` in the file reaches the engine: with 0.5 s a
// stream VM peer that sends half a frame and stalls is closed well before the 5 s default
// (logged with the configured value, the frame counted as truncated).
import Foundation
import Glibc
import Testing
import TestSupport

@Suite struct PartialFrameTimeoutTests {
    @Test func aShortTimeoutClosesAPeerHoldingHalfAFrame() throws {
        try withTopology { t in
            let path = "/tmp/\(t.tag)-pft.sock"
            let d = try DaemonProcess(t, config: """
                partial-frame-timeout = 0.5
                [[bridges]]
                name = "lab"
                [[bridges.ports]]
                name = "vm0"
                kind = "vm"
                path = "\(path)"
                """)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            #expect(withUnixAddress(path) { connect(fd, $0, $1) } == 0, "\(d.log)")
            var tv = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            // A length prefix of 60 and 20 bytes of the frame, then nothing.
            let half: [UInt8] = [0, 0, 0, 60] + [UInt8](repeating: 0xff, count: 6) + [0x52, 0x54, 0, 0x12, 0x34, 0x56] + [UInt8](repeating: 0xab, count: 8)
            #expect(half.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == half.count)
            var b = [UInt8](repeating: 0, count: 64)
            let started = Date()
            let n = read(fd, &b, b.count)
            #expect(n == 0 || (n < 0 && errno == ECONNRESET), "the daemon closes the connection (read \(n), errno \(errno))\n\(d.log)")
            #expect(Date().timeIntervalSince(started) < 4.5, "well before the 5 s default")
            try d.waitFor("peer held a partial frame for more than 0.5 s")
            // Read at start: a reload with another value says it needs a restart.
            try String(contentsOfFile: d.configPath, encoding: .utf8)
                .replacingOccurrences(of: "partial-frame-timeout = 0.5", with: "partial-frame-timeout = 2")
                .write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("partial-frame-timeout change not applied (restart needed)")
            #expect(d.stop() == 0)
            #expect(finalCounters(d.log)["vm0"]?.int("drop-truncated") == 1, "\(d.log)")
        }
    }
}
