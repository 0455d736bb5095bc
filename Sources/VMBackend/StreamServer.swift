// StreamServer: tapbridge's side of `-netdev stream,server=off` — one listening socket, at most one
// connected VM at a time. Policy for a second connection while one is active: REFUSE it (close it
// at once, log and count). A hostile local process thus cannot hijack a running VM's port, and a
// restarted QEMU still gets in because the old connection's EOF is seen before or when it connects
// (`acceptPending` first checks whether the current peer is still alive).
import Glibc
import UnixSocketFiles

public final class StreamServer {
    public let path: String
    public let listenFD: Int32
    public let limits: FrameLimits
    public private(set) var peer: StreamPeer?
    public private(set) var counters = VMPortCounters()
    private let log: (String) -> Void
    private let queueCapacity: Int

    public init(path: String, access: SocketFileAccess = SocketFileAccess(), limits: FrameLimits = FrameLimits(),
                queueCapacity: Int = 256 * 1024, log: @escaping (String) -> Void = { _ in }) throws {
        self.path = path; self.limits = limits; self.log = log; self.queueCapacity = queueCapacity
        listenFD = try UnixSocketFile.listenStream(at: path, access: access)
    }

    /// Adopts an already-connected fd (socket activation, socketpair) as the current peer.
    public func adopt(fd: Int32) throws {
        try UnixSocketFile.setNonblocking(fd, path: path)
        install(fd)
    }

    private func install(_ fd: Int32) {
        peer = StreamPeer(fd: fd, name: path, limits: limits, queueCapacity: queueCapacity, log: log)
        counters.connections += 1
        log("vm port \(path): VM connected")
    }

    /// Whether the current peer has hung up (POLLHUP/POLLRDHUP without reading its data).
    private func peerGone(_ p: StreamPeer) -> Bool {
        guard p.isOpen else { return true }
        var pfd = pollfd(fd: p.fd, events: pollRDHUP, revents: 0)
        return poll(&pfd, 1, 0) > 0 && (pfd.revents & (pollRDHUP | Int16(POLLHUP) | Int16(POLLERR))) != 0
    }

    /// Accepts pending connections: the first becomes the peer, others are refused while it lives.
    public func acceptPending() throws {
        while let fd = try UnixSocketFile.accept(listenFD, path: path) {
            if let p = peer, !peerGone(p) {
                counters.refusedSecondConnection += 1
                close(fd)
                log("vm port \(path): refused a second connection (a VM is already attached)")
                continue
            }
            if let p = peer { absorb(p); p.close(reason: "replaced by a new connection after hang-up") }
            install(fd)
        }
    }

    /// Forgets a closed peer, keeping its counters.
    public func reapClosedPeer() { if let p = peer, !p.isOpen { absorb(p); peer = nil } }

    private func absorb(_ p: StreamPeer) {
        let c = p.counters
        counters.framesIn += c.framesIn; counters.bytesIn += c.bytesIn; counters.framesOut += c.framesOut; counters.bytesOut += c.bytesOut
        counters.droppedRunt += c.droppedRunt; counters.droppedQueueFull += c.droppedQueueFull; counters.droppedTooLargeOut += c.droppedTooLargeOut
        counters.closedZeroLength += c.closedZeroLength; counters.closedTooLarge += c.closedTooLarge
        counters.closedTruncated += c.closedTruncated; counters.closedByPeer += c.closedByPeer; counters.closedError += c.closedError
    }

    deinit {
        peer = nil
        close(listenFD)
        // Remove our own socket file only if it is still a socket (never follow a symlink).
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
    }
}

/// Anti-spoofing for a VM attachment: the frame's source MAC must be the VM's assigned MAC.
@inline(__always)
public func sourceMACMatches(_ frame: UnsafeRawBufferPointer, _ mac: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) -> Bool {
    guard frame.count >= 12 else { return false }
    return frame[6] == mac.0 && frame[7] == mac.1 && frame[8] == mac.2 && frame[9] == mac.3 && frame[10] == mac.4 && frame[11] == mac.5
}
