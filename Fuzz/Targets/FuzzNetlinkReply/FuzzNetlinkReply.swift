// FuzzNetlinkReply: one rtnetlink datagram as NetlinkSocket.request and LinkMonitor receive it,
// in a buffer of exactly the received size (so AddressSanitizer sees any read past it): the
// message walk, LinkInfo decoding of RTM_NEWLINK/RTM_DELLINK (attributes, nested link info,
// macvlan data, source MAC lists, IFLA_STATS64 of any length, IFLA_IFALIAS), VxlanFDBEntry
// decoding of RTM_NEWNEIGH (AF_BRIDGE FDB dump entries of a VXLAN device) and the
// error/extended-ack decoding of NLMSG_ERROR.
// Input: the datagram.
import CLibmnl
import FuzzSupport
@testable import Netlink

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetlinkReply(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    // The receive buffer is 8-byte aligned, as NetlinkSocket's is.
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 8)
    defer { buffer.deallocate() }
    buffer.copyMemory(from: data, byteCount: count)
    NetlinkMessages.forEach(in: UnsafeRawBufferPointer(start: buffer, count: count)) { msg in
        let length = Int(msg.pointee.nlmsg_len)
        fuzzCheck(length >= MemoryLayout<nlmsghdr>.size, "message of \(length) bytes handed out")
        fuzzCheck(UnsafeRawPointer(msg) + length <= UnsafeRawPointer(buffer) + count, "message past the datagram")
        switch Int32(msg.pointee.nlmsg_type) {
        case NLMSG_ERROR:
            let e = NetlinkSocket.decodeError(msg)
            fuzzCheck(e.errno >= 0, "negative errno \(e.errno)")
        case NLMSG_DONE:
            break
        case Int32(RTM_NEWNEIGH):
            if let e = VxlanFDBEntry(message: msg) {
                fuzzCheck(e.destination.map { $0.bytes.count == 4 || $0.bytes.count == 16 } ?? true, "destination of odd size")
                _ = e.isFloodEntry; _ = e.destination?.host
            }
        default:
            let link = LinkInfo(message: msg)
            _ = link.isUp; _ = link.isMacvlanFamily
            fuzzCheck(link.sourceMACs.count <= length / 10, "more source MACs than the message holds")
            // At most one scalar per byte kept (an invalid byte becomes U+FFFD, three in UTF-8).
            fuzzCheck((link.alias?.unicodeScalars.count ?? 0) <= LinkInfo.aliasLimit, "alias past the kernel's limit")
            if link.statistics != nil { fuzzCheck(length >= 16 + 16 + 4 + 32, "statistics from fewer than 4 fields") }
        }
        return true
    }
    return 0
}
