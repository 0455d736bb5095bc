// Connection: one vhost-user socket (Unix stream, blocking, read by one control thread). Owns
// reading a message — the 12-byte header, then exactly `size` payload bytes, both with recvmsg
// so SCM_RIGHTS descriptors are collected wherever they arrive (MSG_CMSG_CLOEXEC; at most 8, the
// rest closed at once) — and writing replies. A front-end that disconnects mid-message, sends a
// bad header or more descriptors than fit is an error; an orderly close between messages is nil.
import CVhostUserShim
import Glibc

/// One message as read from the socket; `fds` are owned by the holder until passed to `decode`.
public struct ReceivedMessage: Sendable {
    public var header: VhostUserHeader
    public var payload: [UInt8]
    public var fds: [Int32]

    /// Decodes it (taking the descriptors).
    public func decode() throws(VhostUserError) -> VhostUserMessage {
        let result = payload.withUnsafeBytes { b in
            Result { () throws(VhostUserError) -> VhostUserMessage in
                try VhostUserMessage.decode(header: header, payload: b, fds: fds)
            }
        }
        return try result.get()
    }
}

public final class VhostUserConnection: @unchecked Sendable {
    /// The socket; owned, closed by `close()` or deinit.
    public private(set) var fd: Int32

    public init(adopting fd: Int32) { self.fd = fd }
    deinit { close() }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    /// Wakes a thread blocked in `receive` (it then sees end of file).
    public func shutdown() {
        if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// Reads one message. nil: the front-end closed the connection between messages.
    public func receive() throws(VhostUserError) -> ReceivedMessage? {
        var fds: [Int32] = []
        var ok = false
        defer { if !ok { for f in fds { _ = Glibc.close(f) } } }
        var headerBytes = [UInt8](repeating: 0, count: VhostUserHeader.size)
        let got = try readFully(&headerBytes, fds: &fds)
        if got == 0 { ok = fds.isEmpty; return nil }
        if got < VhostUserHeader.size { throw .disconnectedMidMessage(read: got, of: VhostUserHeader.size) }
        let header = headerBytes.withUnsafeBytes { VhostUserHeader(bytes: $0.baseAddress!) }
        try header.validate()
        var payload = [UInt8](repeating: 0, count: Int(header.size))
        if header.size > 0 {
            let n = try readFully(&payload, fds: &fds)
            if n < payload.count {
                throw .disconnectedMidMessage(read: VhostUserHeader.size + n, of: VhostUserHeader.size + payload.count)
            }
        }
        ok = true
        return ReceivedMessage(header: header, payload: payload, fds: fds)
    }

    /// Reads until `buffer` is full or end of file; returns the bytes read.
    private func readFully(_ buffer: inout [UInt8], fds: inout [Int32]) throws(VhostUserError) -> Int {
        let controlSize = tb_vu_cmsg_space(Int32(VhostUserLimits.maxFDs))
        var control = [UInt8](repeating: 0, count: controlSize)
        var done = 0
        let total = buffer.count
        while done < total {
            var slot = [Int32](repeating: -1, count: VhostUserLimits.maxFDs)
            var closed: Int32 = 0
            var truncated = false
            let n: Int = buffer.withUnsafeMutableBytes { b in
                control.withUnsafeMutableBytes { c in
                    var iov = iovec(iov_base: b.baseAddress! + done, iov_len: total - done)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = c.baseAddress
                        msg.msg_controllen = controlSize
                        var r: Int
                        repeat { r = recvmsg(fd, &msg, Int32(MSG_CMSG_CLOEXEC)) } while r < 0 && errno == EINTR
                        if r >= 0 {
                            truncated = msg.msg_flags & Int32(MSG_CTRUNC) != 0
                            let room = Int32(VhostUserLimits.maxFDs - fds.count)
                            let stored = slot.withUnsafeMutableBufferPointer { s in
                                tb_vu_take_fds(&msg, s.baseAddress!, max(room, 0), &closed)
                            }
                            for i in 0..<Int(stored) { fds.append(slot[i]) }
                        }
                        return r
                    }
                }
            }
            if n < 0 { throw .socket("recvmsg on vhost-user socket", errno: errno) }
            if truncated || closed > 0 { throw .controlTruncated }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Sends a reply (REPLY flag, version 1) with a payload.
    public func reply(request: UInt32, payload: [UInt8]) throws(VhostUserError) {
        let bytes = VhostUserEncoder.message(request: request, flags: VhostUserHeader.version | VhostUserHeader.flagReply, payload: payload)
        try send(bytes, fds: [])
    }

    /// Sends raw bytes with descriptors (SCM_RIGHTS on the first byte); used by replies and by
    /// test front-ends.
    public func send(_ bytes: [UInt8], fds: [Int32]) throws(VhostUserError) {
        var done = 0
        while done < bytes.count {
            let n: Int = bytes.withUnsafeBytes { b in
                var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress! + done), iov_len: bytes.count - done)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    var control = [UInt8](repeating: 0, count: tb_vu_cmsg_space(Int32(max(fds.count, 1))))
                    return control.withUnsafeMutableBytes { c in
                        if done == 0 && !fds.isEmpty {
                            fds.withUnsafeBufferPointer { f in tb_vu_put_fds(&msg, c.baseAddress, f.baseAddress, Int32(f.count)) }
                        }
                        var r: Int
                        repeat { r = sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) } while r < 0 && errno == EINTR
                        return r
                    }
                }
            }
            if n < 0 { throw .socket("sendmsg on vhost-user socket", errno: errno) }
            done += n
        }
    }
}
