// NetlinkSocket: one rtnetlink socket (libmnl) and the request/reply exchange on it: sequence
// numbers, multi-part dumps, acks, and the kernel's extended-ack error text.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif
import CLibmnl
import CTapbridgeShim

/// An error reply from the kernel: errno plus its extended-ack message, if it gave one.
struct KernelError: Error {
    var errno: Int32
    var message: String?
}

@inline(__always) func nlType<T: BinaryInteger>(_ v: T) -> UInt16 { UInt16(truncatingIfNeeded: v) }

final class NetlinkSocket {
    let handle: OpaquePointer
    let portID: UInt32
    private var sequence: UInt32
    let bufferSize: Int
    let buffer: UnsafeMutableRawPointer

    /// Opens and binds a NETLINK_ROUTE socket in the current thread's namespace; `groups` are
    /// multicast groups to join (RTMGRP_LINK for link events).
    init(groups: UInt32 = 0) throws {
        guard let nl = mnl_socket_open(NETLINK_ROUTE) else {
            throw KernelError(errno: errno, message: "socket(AF_NETLINK, NETLINK_ROUTE)")
        }
        var one: Int32 = 1
        // Extended acks carry the kernel's reason in words; capped acks keep replies small.
        _ = mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
        guard mnl_socket_bind(nl, groups, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let e = errno
            mnl_socket_close(nl)
            throw KernelError(errno: e, message: "bind netlink socket")
        }
        handle = nl
        portID = mnl_socket_get_portid(nl)
        sequence = UInt32(truncatingIfNeeded: time(nil))
        bufferSize = max(32 * 1024, tb_mnl_socket_buffer_size())
        buffer = .allocate(byteCount: bufferSize, alignment: 8)
    }

    /// Opens the socket inside `namespace` (a netlink socket stays bound to the namespace it
    /// was created in, so it can then be used from any thread).
    static func open(in namespace: NetworkNamespace?, groups: UInt32 = 0) throws -> NetlinkSocket {
        guard let namespace else { return try NetlinkSocket(groups: groups) }
        return try namespace.run { try NetlinkSocket(groups: groups) }
    }

    deinit {
        mnl_socket_close(handle)
        buffer.deallocate()
    }

    var fd: Int32 { mnl_socket_get_fd(handle) }

    /// Builds a request with `build`, sends it, and hands every reply message to `onReply`
    /// until the final ack (or NLMSG_DONE for a dump). Throws KernelError on an error reply.
    func request(type: UInt16, flags: Int32, build: (UnsafeMutablePointer<nlmsghdr>) -> Void,
                 onReply: (UnsafePointer<nlmsghdr>) throws -> Void = { _ in }) throws {
        let request = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 8)
        defer { request.deallocate() }
        memset(request, 0, 8192)
        let nlh = mnl_nlmsg_put_header(request)!
        sequence &+= 1
        let seq = sequence
        nlh.pointee.nlmsg_type = type
        nlh.pointee.nlmsg_flags = UInt16(truncatingIfNeeded: Int32(NLM_F_REQUEST) | flags)
        nlh.pointee.nlmsg_seq = seq
        build(nlh)
        let len = Int(nlh.pointee.nlmsg_len)
        let sent = Syscall.uninterrupted { mnl_socket_sendto(handle, nlh, len) }
        guard sent >= 0 else { throw KernelError(errno: errno, message: nil) }

        let isDump = flags & Int32(NLM_F_DUMP) == Int32(NLM_F_DUMP)
        while true {
            let n = Syscall.uninterrupted { mnl_socket_recvfrom(handle, buffer, bufferSize) }
            guard n >= 0 else { throw KernelError(errno: errno, message: nil) }
            var finished = false
            try NetlinkMessages.forEach(in: UnsafeRawBufferPointer(start: buffer, count: n)) { msg in
                guard msg.pointee.nlmsg_seq == seq, msg.pointee.nlmsg_pid == portID else { return true }
                switch Int32(msg.pointee.nlmsg_type) {
                case NLMSG_ERROR:
                    let err = Self.decodeError(msg)
                    if err.errno == 0 { finished = true; return false }
                    throw err
                case NLMSG_DONE:
                    finished = true
                default:
                    try onReply(msg)
                    finished = !isDump && flags & Int32(NLM_F_ACK) == 0
                }
                return !finished
            }
            if finished { return }
        }
    }

    /// Decodes struct nlmsgerr and, when present, its NLMSGERR_ATTR_MSG text.
    static func decodeError(_ msg: UnsafePointer<nlmsghdr>) -> KernelError {
        let payload = UnsafeRawPointer(msg) + MemoryLayout<nlmsghdr>.size
        let total = Int(msg.pointee.nlmsg_len) - MemoryLayout<nlmsghdr>.size
        guard total >= MemoryLayout<nlmsgerr>.size else { return KernelError(errno: EPROTO, message: "short error reply") }
        let code = payload.loadUnaligned(as: Int32.self)
        // The kernel sends 0 (an ack) or a negated errno; anything else (a positive code, or
        // Int32.min, whose negation traps) is not a reply we understand.
        guard code <= 0, code != Int32.min else { return KernelError(errno: EPROTO, message: "error reply with code \(code)") }
        var message: String?
        if msg.pointee.nlmsg_flags & UInt16(NLM_F_ACK_TLVS) != 0 {
            var tlvOffset = MemoryLayout<nlmsgerr>.size
            if msg.pointee.nlmsg_flags & UInt16(NLM_F_CAPPED) == 0 {
                // The original request follows the error header unless the ack was capped.
                let origLen = Int(payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                tlvOffset = 4 + ((origLen + 3) & ~3)
            }
            if tlvOffset < total {
                let tlvs = UnsafeRawBufferPointer(start: payload + tlvOffset, count: total - tlvOffset)
                message = NetlinkAttribute.parse(tlvs).first(NLMSGERR_ATTR_MSG.rawValue)?.string
            }
        }
        return KernelError(errno: -code, message: message)
    }
}
