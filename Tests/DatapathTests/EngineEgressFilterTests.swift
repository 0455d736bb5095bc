// An egress filter in the engine: each destination's copy is judged for that port, denied
// copies are counted against the egress port as `filtered`, other ports still get theirs.
import Foundation
import Testing
@testable import Datapath
import Frames
import Handlers

@Suite(.serialized)
struct EngineEgressFilterTests {
    @Test func egressFilterDropsOnlyTheFilteredPortsCopy() throws {
        var pairs: [[Int32]] = []
        for _ in 0..<3 {
            var pair: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &pair) == 0)
            pairs.append(pair)
        }
        defer { for p in pairs { close(p[1]) } }
        let filter = try FrameFilter(rules: [.expression("udp dst port 53", .deny)], ports: ["c"], direction: .egress)
        let engine = makeEngine()
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([filter]))
        let ids = try ["a", "b", "c"].enumerated().map { i, n in try bridge.attach(DescriptorPort(name: n, descriptor: pairs[i][0])) }
        try engine.start()
        defer { engine.stop() }
        // 10 frames from a: 4 to udp port 53 (seq 0, 3, 6, 9), 6 to port 5001; all flood to b and c.
        for seq in 0..<10 {
            var f: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00,
                              0x45, 0, 0, 36, 0, UInt8(seq), 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
                              0x13, 0x88, 0, seq % 3 == 0 ? 53 : 0x89, 0, 16, 0, 0] + [UInt8](repeating: UInt8(seq), count: 8)
            if seq % 3 != 0 { f[36] = 0x13 }
            _ = send(pairs[0][1], &f, f.count, 0)
        }
        func received(_ fd: Int32, atLeast n: Int) -> [UInt8] {
            var seqs: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 2048)
            let end = Date().addingTimeInterval(30)   // ends once n arrived and 300 ms passed quiet
            while Date() < end {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, seqs.count >= n ? 300 : 50) > 0 else { if seqs.count >= n { break }; continue }
                let k = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
                if k >= 20 { seqs.append(buf[19]) }
            }
            return seqs
        }
        #expect(received(pairs[1][1], atLeast: 10) == Array(0..<10), "b is not filtered")
        #expect(received(pairs[2][1], atLeast: 6) == [1, 2, 4, 5, 7, 8], "c gets no udp port 53")
        let s = try engine.snapshot().bridgeStats("br")
        #expect(try s.stats(ids[2]).drops(.filtered) == 4)
        #expect(try s.stats(ids[1]).drops(.filtered) == 0)
        #expect(try s.stats(ids[0]).drops(.filtered) == 0, "not an ingress drop")
        #expect(filter.hits(rule: 0).packets == 4)
    }
}
