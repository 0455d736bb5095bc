// Frame.mirror: copies to an analyser port leave whatever the verdict, dropped frames included.
import Foundation
import Testing
@testable import Datapath
import Frames
import TestSupport

/// Mirrors every frame to the port named "tap"; drops EtherType 0x88B5 as `filtered`.
final class MirrorAll: FrameHandler, @unchecked Sendable {
    let name = "mirror-all"
    private var tap: PortID?
    func portsChanged(_ ports: PortTable) { tap = ports.port(named: "tap")?.id }
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        if let tap, frame.ingress != tap { frame.mirror.insert(tap) }
        return frame.etherType == 0x88B5 ? .drop(.filtered) : .continue
    }
}

@Suite(.serialized)
struct EngineMirrorTests {
    @Test func mirroredCopiesIncludeDroppedFrames() throws {
        try withTopology { t in
            let a = try addHost(t, 1), b = try addHost(t, 2)
            var tapPair: [Int32] = [0, 0], srcPair: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &tapPair) == 0)
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &srcPair) == 0)
            defer { close(tapPair[1]); close(srcPair[1]) }
            let engine = makeEngine()
            let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([MirrorAll()]))
            try bridge.attach(MacvtapPort(name: a.macvtap))
            try bridge.attach(MacvtapPort(name: b.macvtap))
            let tap = try bridge.attach(DescriptorPort(name: "tap", descriptor: tapPair[0]))
            let src = try bridge.attach(DescriptorPort(name: "src", descriptor: srcPair[0]))
            try engine.start()
            defer { engine.stop() }

            #expect(try ping(a, b))
            var odd: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x42, 0x88, 0xB5] + [UInt8](repeating: 0x5A, count: 46)
            _ = send(srcPair[1], &odd, odd.count, 0)
            var sawICMP = false, sawDropped = false
            let end = Date().addingTimeInterval(30)   // ends as soon as both are seen
            var buf = [UInt8](repeating: 0, count: 70000)
            while !(sawICMP && sawDropped) && Date() < end {
                var p = pollfd(fd: tapPair[1], events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0 else { continue }
                let n = buf.withUnsafeMutableBytes { recv(tapPair[1], $0.baseAddress, $0.count, 0) }
                guard n >= 34 else { continue }
                if buf[12] == 0x08 && buf[13] == 0x00 && buf[23] == 1 { sawICMP = true }
                if buf[12] == 0x88 && buf[13] == 0xB5 { sawDropped = true }
            }
            #expect(sawICMP, "forwarded frames are mirrored")
            #expect(sawDropped, "a dropped frame is mirrored too")
            let s = try engine.snapshot().bridgeStats("br")
            #expect(try s.stats(src).drops(.filtered) == 1)
            #expect(try s.stats(tap).txFrames > 0)
        }
    }
}
