// Engine.inject: a frame the control side originates leaves exactly by the port asked, as is,
// with two workers (the writing worker is woken through its control eventfd); frames the
// engine cannot take are refused and counted, never waited for.
import Foundation
import Testing
@testable import Datapath
import Frames

@Suite(.serialized)
struct EngineInjectionTests {
    @Test func injectedFrameLeavesByItsPortOnly() throws {
        var pairs: [[Int32]] = []
        for _ in 0..<2 {
            var pair: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &pair) == 0)
            pairs.append(pair)
        }
        defer { for p in pairs { close(p[1]) } }
        let engine = makeEngine(workers: 2)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        let ids = try ["a", "b"].enumerated().map { i, n in try bridge.attach(DescriptorPort(name: n, descriptor: pairs[i][0])) }
        var frame: [UInt8] = [0x01, 0x80, 0xc2, 0, 0, 0, 0x02, 0, 0, 0, 0, 0x42, 0, 0x26, 0x42, 0x42, 0x03]
            + [UInt8](repeating: 0x5a, count: 43)
        // Not running yet: refused.
        #expect(!frame.withUnsafeBytes { engine.inject($0, bridge: bridge, port: ids[1]) })
        try engine.start()
        defer { engine.stop() }
        for _ in 0..<3 { #expect(frame.withUnsafeBytes { engine.inject($0, bridge: bridge, port: ids[1]) }) }
        // No such port, too short, too long: refused.
        #expect(!frame.withUnsafeBytes { engine.inject($0, bridge: bridge, port: PortID(7)) })
        #expect(![UInt8](repeating: 0, count: 10).withUnsafeBytes { engine.inject($0, bridge: bridge, port: ids[0]) })
        #expect(![UInt8](repeating: 0, count: 1519).withUnsafeBytes { engine.inject($0, bridge: bridge, port: ids[0]) })

        var got: [[UInt8]] = []
        var buf = [UInt8](repeating: 0, count: 2048)
        let end = Date().addingTimeInterval(10)
        while got.count < 3 && Date() < end {
            var p = pollfd(fd: pairs[1][1], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = recv(pairs[1][1], &buf, buf.count, Int32(MSG_DONTWAIT))
            if n > 0 { got.append(Array(buf[0..<n])) }
        }
        #expect(got == [frame, frame, frame], "port b got \(got.count) frames")
        var p = pollfd(fd: pairs[0][1], events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 200) == 0, "port a got an injected frame")
        let s = engine.injectionStatistics()
        #expect(s.queued == 3 && s.refused == 3, "\(s)")
        let b = try engine.snapshot().bridgeStats("br")
        #expect(try b.stats(ids[1]).txFrames == 3)
        frame[0] = 0   // the engine copied the bytes: changing them now changes nothing sent
    }

    @Test func fullQueueRefusesAndCounts() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        let engine = makeEngine(workers: 1)
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
        let id = try bridge.attach(DescriptorPort(name: "a", descriptor: pair[0]))
        try engine.start()
        defer { engine.stop() }
        let frame = [UInt8](repeating: 0x11, count: 60)
        // Far more than a queue holds, as fast as the control side can: some may be refused,
        // every one is either queued or refused, and nothing blocks.
        let n = Engine.injectionQueueCapacity * 20
        var accepted = 0
        for _ in 0..<n where frame.withUnsafeBytes({ engine.inject($0, bridge: bridge, port: id) }) { accepted += 1 }
        let s = engine.injectionStatistics()
        #expect(s.queued == UInt64(accepted) && s.queued + s.refused == UInt64(n), "\(s)")
        #expect(accepted >= Engine.injectionQueueCapacity)
    }
}
