// StreamPeer: one connected QEMU stream socket — nonblocking reads through the decoder, writes
// with writev (prefix + frame, no copy) and a bounded preallocated queue for what the peer has
// not taken yet. A peer that stops reading fills the queue; further frames are dropped and
// counted, the worker never blocks.
import Glibc

public struct VMPortCounters: Sendable, Equatable {
    public var framesIn = 0, bytesIn = 0, framesOut = 0, bytesOut = 0
    public var droppedRunt = 0, droppedQueueFull = 0, droppedTooLargeOut = 0
    public var closedZeroLength = 0, closedTooLarge = 0, closedTruncated = 0, closedByPeer = 0, closedError = 0
    public var refusedSecondConnection = 0, connections = 0
    public var droppedSpoofedSource = 0
    public init() {}
}

public enum ReadOutcome: Equatable {
    case wouldBlock                 // nothing more to read now
    case closed(reason: String)     // connection is finished (peer gone or protocol violation); the fd was closed
}

public enum SendOutcome: Equatable { case sent, queued, dropped }

public final class StreamPeer {
    public let fd: Int32
    public let name: String
    public let decoder: StreamFrameDecoder
    public private(set) var counters = VMPortCounters()
    public private(set) var isOpen = true
    private let log: (String) -> Void

    // Outbound queue: a byte ring of already-framed data the socket did not accept yet.
    private let queue: UnsafeMutableRawPointer
    public let queueCapacity: Int
    private var qHead = 0, qCount = 0

    public init(fd: Int32, name: String, limits: FrameLimits = FrameLimits(), queueCapacity: Int = 256 * 1024,
                log: @escaping (String) -> Void = { _ in }) {
        self.fd = fd; self.name = name; self.log = log
        decoder = StreamFrameDecoder(limits: limits)
        self.queueCapacity = max(queueCapacity, 4 + limits.maxFrame)
        queue = UnsafeMutableRawPointer.allocate(byteCount: self.queueCapacity, alignment: 16)
    }
    deinit { queue.deallocate(); if isOpen { Glibc.close(fd) } }

    public var queuedBytes: Int { qCount }

    public func close(reason: String) {
        guard isOpen else { return }
        isOpen = false
        Glibc.close(fd)
        log("vm port \(name): connection closed: \(reason)")
    }

    /// Reads everything available and hands each valid frame to `deliver` (the view is valid only during the call).
    public func readAvailable(_ deliver: (UnsafeRawBufferPointer) -> Void) -> ReadOutcome {
        guard isOpen else { return .closed(reason: "not connected") }
        while true {
            let space = decoder.writableSpace()
            let n = read(fd, space.baseAddress, space.count)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
                counters.closedError += 1
                let r = "read failed: \(String(cString: strerror(errno)))"
                close(reason: r); return .closed(reason: r)
            }
            if n == 0 {
                if let t = decoder.finish() {
                    counters.closedTruncated += 1
                    close(reason: t.description); return .closed(reason: t.description)
                }
                counters.closedByPeer += 1
                close(reason: "peer disconnected"); return .closed(reason: "peer disconnected")
            }
            decoder.commit(n)
            if let fatal = drain(deliver) { close(reason: fatal); return .closed(reason: fatal) }
        }
    }

    /// Feeds bytes that arrived by another path (io_uring completion into `decoder.writableSpace()` + `commit`).
    /// Returns a reason when the connection must be closed.
    public func drain(_ deliver: (UnsafeRawBufferPointer) -> Void) -> String? {
        while true {
            switch decoder.next() {
            case .needMore: return nil
            case let .frame(f):
                counters.framesIn += 1; counters.bytesIn += f.count
                deliver(f)
            case let .rejected(e):
                switch e {
                case .runt: counters.droppedRunt += 1; log("vm port \(name): dropped frame: \(e)")
                case .zeroLength: counters.closedZeroLength += 1; return e.description
                case .tooLarge: counters.closedTooLarge += 1; return e.description
                case .truncated: counters.closedTruncated += 1; return e.description
                }
            }
        }
    }

    /// Sends one frame with its prefix. Never blocks: whatever the socket does not take is queued
    /// (the frame is copied only then); if the whole frame does not fit in the queue it is dropped.
    @discardableResult
    public func send(_ frame: UnsafeRawBufferPointer) -> SendOutcome {
        guard isOpen else { counters.droppedQueueFull += 1; return .dropped }
        guard frame.count <= decoder.limits.maxFrame, frame.count > 0 else { counters.droppedTooLargeOut += 1; return .dropped }
        let total = 4 + frame.count
        if qCount > 0 { flush() }
        var prefix = streamPrefix(frame.count)
        var sent = 0
        if qCount == 0 {
            sent = withUnsafeMutableBytes(of: &prefix) { pb -> Int in
                var iov = (iovec(iov_base: pb.baseAddress, iov_len: 4),
                           iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count))
                return withUnsafePointer(to: &iov) {
                    $0.withMemoryRebound(to: iovec.self, capacity: 2) { p in
                        while true {
                            let n = writev(fd, p, 2)
                            if n >= 0 { return n }
                            if errno == EINTR { continue }
                            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1
                        }
                    }
                }
            }
            if sent < 0 { counters.closedError += 1; close(reason: "write failed: \(String(cString: strerror(errno)))"); return .dropped }
            if sent == total { counters.framesOut += 1; counters.bytesOut += frame.count; return .sent }
        }
        let rest = total - sent
        guard rest <= queueCapacity - qCount else { counters.droppedQueueFull += 1; return .dropped }
        // Only the part the socket did not take goes into the queue (prefix bytes first if needed).
        withUnsafeBytes(of: &prefix) { pb in
            if sent < 4 { enqueue(UnsafeRawBufferPointer(rebasing: pb[sent...])) }
        }
        enqueue(UnsafeRawBufferPointer(rebasing: frame[max(0, sent - 4)...]))
        counters.framesOut += 1; counters.bytesOut += frame.count
        return .queued
    }

    private func enqueue(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        let tail = (qHead + qCount) % queueCapacity
        let first = min(b.count, queueCapacity - tail)
        (queue + tail).copyMemory(from: b.baseAddress!, byteCount: first)
        if first < b.count { queue.copyMemory(from: b.baseAddress! + first, byteCount: b.count - first) }
        qCount += b.count
    }

    /// Writes queued bytes the socket will take now; call when the fd is writable.
    public func flush() {
        while qCount > 0 && isOpen {
            let chunk = min(qCount, queueCapacity - qHead)
            let n = write(fd, queue + qHead, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                counters.closedError += 1; close(reason: "write failed: \(String(cString: strerror(errno)))"); return
            }
            qHead = (qHead + n) % queueCapacity; qCount -= n
            if qCount == 0 { qHead = 0 }
        }
    }
}
