// TCPSegmentPlan on hand-made super-frames, no kernel: what a guest's vnet header and headers
// must agree on before the worker cuts a frame (Fuzz/Targets/FuzzSegmentation fuzzes the rest).
import Testing
@testable import Datapath
import Frames

/// An IPv4 TCP super-frame: Ethernet, an IPv4 header whose IHL field says `ihl`, TCP, payload.
func superFrame(ihl: UInt8 = 5, payload: Int = 3000) -> [UInt8] {
    var f = [UInt8](repeating: 0, count: 14)
    f[12] = 0x08
    f += [0x40 | ihl, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]
    f += [0x9C, 0x40, 0, 80, 0, 0, 0x03, 0xE8, 0, 0, 0, 1, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
    return f + (0..<payload).map { UInt8(truncatingIfNeeded: $0) }
}

func plan(_ bytes: [UInt8], checksumStart: UInt16, gsoSize: UInt16 = 1000) -> TCPSegmentPlan? {
    var b = bytes
    return b.withUnsafeMutableBytes { buf in
        var vnet = VirtioNetHeader()
        vnet.flags = VirtioNetHeader.flagNeedsChecksum
        vnet.gsoType = VirtioNetHeader.gsoTCPv4
        vnet.gsoSize = gsoSize
        vnet.checksumStart = checksumStart
        vnet.checksumOffset = 16
        return TCPSegmentPlan(Frame(bytes: buf, ingress: PortID(0), vnet: vnet), maxHeaders: 160)
    }
}

struct SegmentPlanTests {
    @Test func aWellFormedSuperFrameIsCutIntoMSSSizedSegments() throws {
        let p = try #require(plan(superFrame(), checksumStart: 34))
        #expect(p.headers == 54 && p.mss == 1000 && p.count == 3 && p.ipv4)
    }

    @Test func anIPv4HeaderShorterThan20BytesIsNotSegmented() {
        // IHL 4 (16 bytes) with the TCP header right after it: the vnet header and the IHL
        // agree, but rewriting the IPv4 length, ID and checksum would write into the TCP
        // header. Before: accepted and segmented.
        var f = superFrame(ihl: 4)
        f.removeSubrange(30..<34)
        #expect(plan(f, checksumStart: 30) == nil)
        #expect(plan(superFrame(ihl: 5), checksumStart: 30) == nil)   // IHL and checksum start disagree
    }

    @Test func aZeroSegmentSizeOrHeadersPastTheFrameAreNotSegmented() {
        #expect(plan(superFrame(), checksumStart: 34, gsoSize: 0) == nil)
        #expect(plan(superFrame(payload: 0), checksumStart: 34) == nil)
        #expect(plan(superFrame(), checksumStart: 4000) == nil)
    }
}
