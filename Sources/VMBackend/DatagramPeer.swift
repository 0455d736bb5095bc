// DatagramPeer: QEMU `-netdev dgram` over Unix datagram sockets — one raw frame per datagram.
// tapbridge binds its own path; QEMU binds `local.path` and sends to ours; we send to QEMU's path.
// A datagram the peer's queue cannot take is dropped and counted (never blocks).
import Glibc
import UnixSocketFiles

public final class DatagramPeer {
    public let fd: Int32
    public let localPath: String
    public let remotePath: String
    public let limits: FrameLimits
    public private(set) var counters = VMPortCounters()
    private let buffer: UnsafeMutableRawPointer
    private let bufferSize: Int
    private let log: (String) -> Void

    public init(localPath: String, remotePath: String, access: SocketFileAccess = SocketFileAccess(),
                limits: FrameLimits = FrameLimits(), log: @escaping (String) -> Void = { _ in }) throws {
        self.localPath = localPath; self.remotePath = remotePath; self.limits = limits; self.log = log
        fd = try UnixSocketFile.bindDatagram(at: localPath, access: access)
        bufferSize = limits.maxFrame + 1
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
    }
    deinit {
        buffer.deallocate(); close(fd)
        var st = stat()
        if lstat(localPath, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(localPath) }
    }

    /// Receives every pending datagram; each valid frame goes to `deliver` (view valid during the call).
    public func readAvailable(_ deliver: (UnsafeRawBufferPointer) -> Void) {
        while true {
            // MSG_TRUNC makes recv return the datagram's real size, so oversize frames are seen, not cut.
            let n = recv(fd, buffer, bufferSize, Int32(MSG_TRUNC))
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            if n > limits.maxFrame {
                counters.droppedTooLargeOut += 1
                log("vm port \(localPath): dropped datagram: \(FramingError.tooLarge(length: n, max: limits.maxFrame))"); continue
            }
            if n < FrameLimits.ethernetHeader {
                counters.droppedRunt += 1
                log("vm port \(localPath): dropped datagram: \(FramingError.runt(length: n))"); continue
            }
            counters.framesIn += 1; counters.bytesIn += n
            deliver(UnsafeRawBufferPointer(start: buffer, count: n))
        }
    }

    @discardableResult
    public func send(_ frame: UnsafeRawBufferPointer) -> SendOutcome {
        guard frame.count <= limits.maxFrame else { counters.droppedTooLargeOut += 1; return .dropped }
        let r = try? UnixAddress.with(remotePath) { sa, len in
            sendto(fd, frame.baseAddress, frame.count, Int32(MSG_DONTWAIT), sa, len)
        }
        guard let n = r, n == frame.count else { counters.droppedQueueFull += 1; return .dropped }
        counters.framesOut += 1; counters.bytesOut += frame.count
        return .sent
    }
}
