// PcapngStreamReader against CaptureWriter's own output cut into arbitrary chunks (what the CLI
// reads from the control socket), and against garbage (an error, never a crash or a hang).
import Foundation
import Testing
@testable import Capture

@Suite struct StreamReaderTests {
    @Test func readsFramesDirectionsAndStatisticsAcrossChunks() throws {
        let path = tempPath("stream.pcapng")
        let w = try CaptureWriter(format: .pcapng, interfaces: ["a", "port-b"], snaplen: 1000, destination: .file(path: path))
        for i in 0..<50 {
            let frame = [UInt8](repeating: UInt8(i), count: 60 + i)
            try frame.withUnsafeBytes {
                try w.write(interface: UInt16(i % 2), direction: i % 3 == 0 ? .egress : .ingress,
                            timestamp: 1_700_000_000_000_000_000 + UInt64(i), originalLength: 60 + i + 5, data: $0)
            }
        }
        try w.writeStatistics(interface: 0, timestamp: 1, received: 25, dropped: 7, comment: "x")
        try w.finish()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for chunk in [1, 3, 64, 4096] {
            var r = PcapngStreamReader()
            var seen: [(UInt16, CaptureDirection, UInt64, Int, [UInt8])] = []
            var stats: [(UInt16, UInt64, UInt64)] = []
            var off = 0
            while off < bytes.count {
                let n = min(chunk, bytes.count - off)
                try bytes.withUnsafeBytes { all in
                    try r.feed(UnsafeRawBufferPointer(rebasing: all[off..<off + n]),
                               frame: { seen.append(($0.interface, $0.direction, $0.timestamp, $0.originalLength, Array($0.data))) },
                               statistics: { stats.append(($0, $1, $2)) })
                }
                off += n
            }
            #expect(seen.count == 50, "chunk \(chunk)")
            for (i, s) in seen.enumerated() {
                #expect(s.0 == UInt16(i % 2) && s.1 == (i % 3 == 0 ? .egress : .ingress))
                #expect(s.2 == 1_700_000_000_000_000_000 + UInt64(i) && s.3 == 65 + i && s.4 == [UInt8](repeating: UInt8(i), count: 60 + i))
            }
            #expect(stats.count == 1 && stats[0] == (0, 25, 7))
        }
    }

    @Test func garbageIsAnErrorNotACrash() {
        var rng = SystemRandomNumberGenerator()
        var errors = 0
        for _ in 0..<2000 {
            var r = PcapngStreamReader()
            // A valid section header first half the time, then random bytes.
            var b: [UInt8] = Bool.random() ? [0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0,
                                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0] : []
            b += (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            do { try b.withUnsafeBytes { try r.feed($0, frame: { _ in }, statistics: { _, _, _ in }) } } catch { errors += 1 }
        }
        #expect(errors > 0)
    }
}
