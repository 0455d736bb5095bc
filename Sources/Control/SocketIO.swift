// SocketIO: the blocking reads and writes the control server and client do on a connected Unix
// stream socket (short writes continued, errors with errno; EINTR is retried by SystemCalls). The
// sockets are blocking with SO_RCVTIMEO/SO_SNDTIMEO, so "would block" means the timeout passed:
// it is reported as an error with errno EAGAIN.
import Glibc
import SystemCalls

enum SocketIO {
    /// Writes every byte; throws on error (EPIPE when the peer went away, EAGAIN at the send timeout).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], subject: String) throws {
        var off = 0
        while off < bytes.count {
            let sent = bytes.withUnsafeBytes { p in
                Result { () throws(SyscallError) in try Syscall.send(fd, p.baseAddress! + off, p.count - off, flags: Int32(MSG_NOSIGNAL)) }
            }
            switch sent {
            case .success(.processed(let n)): off += n
            case .success(.wouldBlock): throw ControlSocketError("write to", subject, errno: EAGAIN)
            case .failure(let e): throw ControlSocketError("write to", subject, errno: e.errno)
            }
        }
    }

    /// Reads what is available (blocking); 0 at end of file (or a reset connection).
    static func read(_ fd: Int32, into buf: inout [UInt8], subject: String) throws -> Int {
        let received = buf.withUnsafeMutableBytes { p in
            Result { () throws(SyscallError) in try Syscall.read(fd, p.baseAddress!, p.count) }
        }
        switch received {
        case .success(.processed(let n)): return n
        case .success(.wouldBlock): throw ControlSocketError("read from", subject, errno: EAGAIN)
        case .failure(let e) where e.errno == ECONNRESET: return 0
        case .failure(let e): throw ControlSocketError("read from", subject, errno: e.errno)
        }
    }

    static func setTimeout(_ fd: Int32, option: Int32, seconds: Double) {
        let tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        try? Syscall.setSocketOption(fd, SOL_SOCKET, option, tv)
    }
}
