// The handler seam's value types: MAC parsing, port sets, VLAN egress tagging, pipeline order.
import Testing
@testable import Frames

@Suite struct MACAddressTests {
    @Test func parsesAndFormats() {
        let m = MACAddress("52:54:00:AB:cd:0f")
        #expect(m?.rawValue == 0x5254_00AB_CD0F)
        #expect(m?.description == "52:54:00:ab:cd:0f")
        #expect(MACAddress("52-54-00-ab-cd-0f") == m)
        #expect(MACAddress("52:54:zz:00:00:01") == nil)
        #expect(MACAddress("52:54:00:00:01") == nil)
        #expect(MACAddress("") == nil)
        #expect(MACAddress.broadcast.isMulticast && MACAddress.broadcast.isBroadcast)
        #expect(MACAddress("01:00:5e:00:00:01")!.isMulticast)
        #expect(!m!.isMulticast)
    }
}

@Suite struct PortSetTests {
    @Test func insertRemoveIterate() {
        var s = PortSet()
        #expect(s.isEmpty)
        for p in [0, 1, 63, 64, 130, 255] { s.insert(PortID(p)) }
        #expect(s.count == 6)
        #expect(Array(s).map(\.rawValue) == [0, 1, 63, 64, 130, 255])
        s.remove(PortID(64))
        #expect(!s.contains(PortID(64)) && s.contains(PortID(63)))
        let t = PortSet([PortID(1), PortID(2)])
        #expect(Array(s.intersection(t)) == [PortID(1)])
        #expect(s.union(t).count == 6)
        #expect(Array(s.subtracting(t)).count == 4)
    }
}

@Suite struct VLANTaggingTests {
    func frame(tagged vid: UInt16?, classified: UInt16) -> (Frame, UnsafeMutableRawBufferPointer) {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        if let vid {
            buf[12] = 0x81; buf[13] = 0x00; buf[14] = UInt8(vid >> 8); buf[15] = UInt8(vid & 0xFF)
            buf[16] = 0x08; buf[17] = 0x00
        } else { buf[12] = 0x08; buf[13] = 0x00 }
        return (Frame(bytes: buf, ingress: PortID(0), vlan: classified), buf)
    }

    @Test func accessAndTrunk() {
        let (untagged, b1) = frame(tagged: nil, classified: 10)
        let (tagged, b2) = frame(tagged: 10, classified: 10)
        defer { b1.deallocate(); b2.deallocate() }
        #expect(tagged.taggedVLAN == 10 && untagged.taggedVLAN == nil)
        #expect(tagged.payload?.etherType == EtherType.ipv4 && tagged.payload?.offset == 18)
        #expect(untagged.egressTagging(for: .access(pvid: 10)) == .asIs)
        #expect(tagged.egressTagging(for: .access(pvid: 10)) == .stripTag)
        #expect(tagged.egressTagging(for: .access(pvid: 20)) == .drop)
        let trunk = VLANMode.trunk(allowed: VLANSet([10, 20]), native: 1)
        #expect(untagged.egressTagging(for: trunk) == .insertTag(10))
        #expect(tagged.egressTagging(for: trunk) == .asIs)
        #expect(tagged.egressTagging(for: .trunk(allowed: VLANSet([20]), native: nil)) == .drop)
        #expect(tagged.egressTagging(for: .trunk(allowed: VLANSet(), native: 10)) == .stripTag)
        #expect(tagged.egressTagging(for: .unaware) == .asIs)
    }
}

final class Fixed: FrameHandler {
    let name: String; let verdict: Verdict; var calls = 0
    init(_ name: String, _ v: Verdict) { self.name = name; verdict = v }
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict { calls += 1; return verdict }
}

@Suite struct PipelineTests {
    @Test func firstDecisiveVerdictWins() {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 60, alignment: 8)
        defer { buf.deallocate() }
        var f = Frame(bytes: buf, ingress: PortID(3))
        let a = Fixed("a", .continue), b = Fixed("b", .forward(PortID(1))), c = Fixed("c", .flood)
        #expect(HandlerPipeline([a, b, c]).run(&f, context: .init(now: 0)) == .forward(PortID(1)))
        #expect(c.calls == 0 && a.calls == 1)
        #expect(HandlerPipeline([a]).run(&f, context: .init(now: 0)) == .flood)
    }

    @Test func dropReasonsRegister() {
        let r = DropReason.register("test-reason")
        #expect(DropReason.register("test-reason") == r)
        #expect(r.name == "test-reason")
        #expect(DropReason.register("filtered") == .filtered)
        #expect(DropReason.queueFull.name == "queue-full")
    }
}
