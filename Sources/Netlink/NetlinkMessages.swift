// NetlinkMessages: the walk over the messages of one received netlink datagram, every header
// length checked against the bytes received. NetlinkSocket.request and LinkMonitor both use
// it, so a short or overlong nlmsg_len from the socket is judged in one place (fuzzed by
// Fuzz/Targets/FuzzNetlinkReply).
#if canImport(Glibc)
import Glibc
#endif
import CLibmnl

enum NetlinkMessages {
    /// Calls `body` with each whole message in `datagram` (nlmsg_len at least a header and
    /// inside the datagram), in order; stops at the first malformed header, or when `body`
    /// returns false. Messages start at 4-byte aligned offsets (NLMSG_ALIGN).
    static func forEach(in datagram: UnsafeRawBufferPointer,
                        _ body: (UnsafePointer<nlmsghdr>) throws -> Bool) rethrows {
        guard let base = datagram.baseAddress else { return }
        let header = MemoryLayout<nlmsghdr>.size
        var offset = 0
        while offset + header <= datagram.count {
            let msg = (base + offset).assumingMemoryBound(to: nlmsghdr.self)
            let length = Int(msg.pointee.nlmsg_len)
            guard length >= header, length <= datagram.count - offset else { return }
            offset += (length + 3) & ~3
            guard try body(msg) else { return }
        }
    }
}
