// SocketIO: the blocking reads and writes the control server and client do on a connected Unix
// stream socket (EINTR retried, short writes continued, errors with errno).
import Glibc

enum SocketIO {
    /// Writes every byte; throws on error (EPIPE when the peer went away).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], subject: String) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ControlSocketError("write to", subject, errno: errno)
            }
            off += n
        }
    }

    /// Reads what is available (blocking); 0 at end of file.
    static func read(_ fd: Int32, into buf: inout [UInt8], subject: String) throws -> Int {
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return 0 }
            throw ControlSocketError("read from", subject, errno: errno)
        }
    }

    static func setTimeout(_ fd: Int32, option: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}
