// VxlanFDBEntry decoded from bytes, no kernel: an AF_BRIDGE RTM_NEWNEIGH as a VXLAN device's FDB
// dump sends it (the all-zeros flood entry with its remote, a learned MAC over IPv6), and
// messages too short for their header, of another family or without a MAC, which are skipped
// without reading past the message (the seeds are in Fuzz/Corpus/FuzzNetlinkReply/vxlan-fdb-*).
import CLibmnl
import Glibc
import Testing
@testable import Netlink

@Suite struct VxlanFDBDecodingTests {
    /// ndmsg: family, 3 pad bytes, ifindex, state, flags, type.
    func ndmsg(family: UInt8 = UInt8(AF_BRIDGE), ifindex: Int32 = 5, state: UInt16 = UInt16(NUD_PERMANENT | NUD_NOARP)) -> [UInt8] {
        [family, 0, 0, 0] + le32(UInt32(bitPattern: ifindex)) + le16(state) + [UInt8(NTF_SELF), 0]
    }
    func attr(_ type: Int32, _ payload: [UInt8]) -> [UInt8] {
        let len = 4 + payload.count
        return le16(UInt16(len)) + le16(UInt16(type)) + payload + [UInt8](repeating: 0, count: (4 - len % 4) % 4)
    }
    func message(_ body: [UInt8], length: UInt32? = nil) -> [UInt8] {
        header(length: length ?? UInt32(16 + body.count), type: UInt16(RTM_NEWNEIGH)) + body
    }
    func decode(_ bytes: [UInt8]) -> VxlanFDBEntry? {
        withDatagram(bytes) { VxlanFDBEntry(message: $0.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)) }
    }

    @Test func aFloodEntryAndALearnedIPv6Entry() throws {
        let flood = try #require(decode(message(ndmsg() + attr(Int32(NDA_LLADDR), [0, 0, 0, 0, 0, 0])
                                                + attr(Int32(NDA_DST), [198, 19, 0, 2]) + attr(Int32(NDA_VNI), le32(42)))))
        #expect(flood.isFloodEntry && flood.isPermanent && flood.ifindex == 5 && flood.vni == 42)
        #expect(flood.destination?.host == "198.19.0.2")
        let v6 = [UInt8](repeating: 0, count: 15) + [2]
        let learned = try #require(decode(message(ndmsg(state: UInt16(NUD_REACHABLE)) + attr(Int32(NDA_LLADDR), [2, 0, 0, 0, 0x0a, 2])
                                                  + attr(Int32(NDA_DST), v6))))
        #expect(!learned.isFloodEntry && !learned.isPermanent && learned.destination?.host == "::2" && learned.vni == nil)
    }

    @Test func malformedEntriesAreSkipped() {
        // Shorter than its ndmsg (the bytes after it are 0xFF garbage).
        #expect(decode(message([], length: 20)) == nil)
        // Not AF_BRIDGE (an ARP neighbour), no MAC, a MAC of 4 bytes.
        #expect(decode(message(ndmsg(family: UInt8(AF_INET)) + attr(Int32(NDA_LLADDR), [0, 0, 0, 0, 0, 0]))) == nil)
        #expect(decode(message(ndmsg() + attr(Int32(NDA_DST), [198, 19, 0, 2]))) == nil)
        #expect(decode(message(ndmsg() + attr(Int32(NDA_LLADDR), [1, 2, 3, 4]))) == nil)
        // A destination of an odd size is no address; an attribute running past the message ends the walk.
        let odd = decode(message(ndmsg() + attr(Int32(NDA_LLADDR), [0, 0, 0, 0, 0, 0]) + attr(Int32(NDA_DST), [1, 2, 3])))
        #expect(odd != nil && odd?.destination == nil)
        let cut = message(ndmsg() + attr(Int32(NDA_LLADDR), [0, 0, 0, 0, 0, 0]) + le16(200) + le16(UInt16(NDA_DST)) + [1, 2, 3, 4])
        #expect(decode(cut)?.destination == nil)
    }
}
