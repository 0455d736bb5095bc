// Netlink replies decoded from bytes, no kernel: malformed messages found by the fuzz target
// Fuzz/Targets/FuzzNetlinkReply (its corpus keeps the inputs) read as errors or zeros, never
// as a trap or a read past the message.
import CLibmnl
import Glibc
import Testing
@testable import Netlink

/// `words` as a netlink datagram in an 8-byte aligned buffer followed by `garbage` 0xFF bytes.
func withDatagram<R>(_ bytes: [UInt8], garbage: Int = 64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + garbage, alignment: 8)
    defer { p.deallocate() }
    p.initializeMemory(as: UInt8.self, repeating: 0xFF, count: bytes.count + garbage)
    p.copyMemory(from: bytes, byteCount: bytes.count)
    return try body(UnsafeRawBufferPointer(start: p, count: bytes.count))
}

func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
func header(length: UInt32, type: UInt16, flags: UInt16 = 0) -> [UInt8] {
    le32(length) + le16(type) + le16(flags) + le32(1) + le32(0)
}

@Suite struct ReplyDecodingTests {
    @Test(arguments: [Int32(0x00EA_FFFF), 1, Int32.min])
    func anErrorReplyWithANonErrnoCodeIsAProtocolError(code: Int32) {
        // nlmsgerr: the code, then the original request's header.
        let msg = header(length: 36, type: UInt16(NLMSG_ERROR)) + le32(UInt32(bitPattern: code)) + header(length: 16, type: 16)
        let e = withDatagram(msg) { NetlinkSocket.decodeError($0.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)) }
        // Before: errno -code (negative, or a trap for Int32.min).
        #expect(e.errno == EPROTO)
    }

    @Test func anErrorReplyKeepsTheKernelsErrnoAndText() {
        let text = Array("File exists".utf8) + [0]
        let msg = header(length: UInt32(36 + 4 + text.count), type: UInt16(NLMSG_ERROR), flags: UInt16(NLM_F_ACK_TLVS | NLM_F_CAPPED))
            + le32(UInt32(bitPattern: -17)) + header(length: 16, type: 16)
            + le16(UInt16(4 + text.count)) + le16(UInt16(NLMSGERR_ATTR_MSG.rawValue)) + text
        let e = withDatagram(msg) { NetlinkSocket.decodeError($0.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)) }
        #expect(e.errno == 17 && e.message == "File exists")
    }

    @Test func aLinkMessageTooShortForItsHeaderReadsAsZeros() {
        // nlmsg_len 16: no ifinfomsg at all; the bytes after it are 0xFF.
        let link = withDatagram(header(length: 16, type: 16)) { LinkInfo(message: $0.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)) }
        // Before: index and flags were read from the bytes past the message (-1, 0xFFFFFFFF).
        #expect(link.index == 0 && link.flags == 0 && link.name == "")
    }

    @Test func theMessageWalkStopsAtTheFirstMalformedHeader() {
        let good = header(length: 20, type: 16) + [0, 0, 0, 0]
        for bad in [header(length: 8, type: 16), header(length: 4096, type: 16)] {
            var seen = 0
            withDatagram(good + bad + good) { d in NetlinkMessages.forEach(in: d) { _ in seen += 1; return true } }
            #expect(seen == 1)
        }
        var seen = 0
        withDatagram(good + good + [1, 2, 3]) { d in NetlinkMessages.forEach(in: d) { _ in seen += 1; return true } }
        #expect(seen == 2)
    }
}

/// IFLA_STATS64 and IFLA_IFALIAS as a kernel (or a hostile peer) may send them: every length.
@Suite struct StatisticsAndAliasDecodingTests {
    /// An RTM_NEWLINK message with one attribute of `type` holding `payload`.
    func link(attribute type: UInt16, _ payload: [UInt8]) -> LinkInfo {
        let attr = le16(UInt16(4 + payload.count)) + le16(type) + payload + [UInt8](repeating: 0, count: (4 - payload.count % 4) % 4)
        let ifinfo = [UInt8](repeating: 0, count: 16)
        let msg = header(length: UInt32(16 + ifinfo.count + attr.count), type: UInt16(RTM_NEWLINK)) + ifinfo + attr
        return withDatagram(msg) { LinkInfo(message: $0.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)) }
    }

    func stats(fields: Int) -> [UInt8] { (0..<fields).flatMap { withUnsafeBytes(of: UInt64($0 + 1), Array.init) } }

    @Test(arguments: [0, 3, 4, 23, 25, 30])
    func statisticsReadOnlyTheFieldsTheAttributeHolds(fields: Int) {
        let l = link(attribute: UInt16(IFLA_STATS64), stats(fields: fields))
        guard fields >= 4 else { #expect(l.statistics == nil); return }
        let s = l.statistics!
        #expect(s.rxPackets == 1 && s.txPackets == 2 && s.rxBytes == 3 && s.txBytes == 4)
        // Field 24 (rx_otherhost_dropped) only when sent; fields past the 25 known are ignored.
        #expect(s.rxOtherHostDropped == (fields >= 25 ? 25 : 0))
        #expect(s.rxNoHandler == (fields >= 24 ? 24 : 0))
    }

    @Test func aStatisticsAttributeWithATornLastFieldIgnoresIt() {
        let s = link(attribute: UInt16(IFLA_STATS64), stats(fields: 5) + [9, 9, 9]).statistics
        #expect(s?.rxErrors == 5 && s?.txErrors == 0)
    }

    @Test func anAliasIsCutAtTheKernelsLimitAndAtItsNUL() {
        let long = link(attribute: UInt16(IFLA_IFALIAS), [UInt8](repeating: 0x61, count: 1000))
        #expect(long.alias?.utf8.count == LinkInfo.aliasLimit)
        #expect(link(attribute: UInt16(IFLA_IFALIAS), Array("up".utf8) + [0, 0x62]).alias == "up")
        #expect(link(attribute: UInt16(IFLA_IFALIAS), [0]).alias == nil)
    }

    /// Found by Fuzz/Targets/FuzzNetlinkReply (corpus: alias-invalid-utf8): 255 bytes read may
    /// hold invalid UTF-8, each byte then a U+FFFD of three UTF-8 bytes. The bound is on what is
    /// read and on the scalars kept (one per byte), not on the UTF-8 length of the result.
    @Test func anAliasOfInvalidUTF8KeepsOneScalarPerByteRead() {
        let alias = link(attribute: UInt16(IFLA_IFALIAS), [UInt8](repeating: 0x89, count: 400)).alias!
        #expect(alias.unicodeScalars.count == LinkInfo.aliasLimit)
        #expect(alias.unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })
    }
}
