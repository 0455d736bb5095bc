// StreamFraming: QEMU `-netdev stream` framing (4-byte big-endian length + raw Ethernet frame).
// The decoder reads straight into its own preallocated buffer, hands frames out as views into it
// and only moves the unfinished tail of a read (at most one partial frame) to the front.
import Datapath
import Glibc

/// Frame size bounds for a VM port. `maxFrame` defaults to MTU 1500 + 18 (Ethernet header + VLAN tag + FCS room).
public struct FrameLimits: Sendable, Equatable {
    public static let ethernetHeader = StreamPrefix.minimumFrame
    public static let absoluteMax = StreamPrefix.absoluteMaxFrame
    public let maxFrame: Int
    public init(mtu: Int = 1500) { self.init(maxFrame: mtu + 18) }
    public init(maxFrame: Int) { self.maxFrame = min(max(maxFrame, FrameLimits.ethernetHeader), FrameLimits.absoluteMax) }
}

/// Why a frame or a connection was rejected (Datapath's type: the engine and this decoder share it).
public typealias FramingError = Datapath.FramingError

public enum DecodeStep {
    case frame(UnsafeRawBufferPointer)
    case needMore
    case rejected(FramingError)
}

/// Incremental decoder for one stream connection. Not thread-safe; one owner (the port's worker).
public final class StreamFrameDecoder {
    public let limits: FrameLimits
    public let capacity: Int
    private let storage: UnsafeMutableRawPointer
    private var start = 0   // first unconsumed byte
    private var end = 0     // one past the last received byte

    /// `readSize` is how much one read may bring in beyond a partial frame (several frames per read).
    public init(limits: FrameLimits = FrameLimits(), readSize: Int = 65536) {
        self.limits = limits
        capacity = 4 + limits.maxFrame + max(readSize, 4 + limits.maxFrame)
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }
    deinit { storage.deallocate() }

    /// Where the next read should land. Compacts first if the tail is short (moves < one frame).
    public func writableSpace() -> UnsafeMutableRawBufferPointer {
        if start == end { start = 0; end = 0 }
        else if capacity - end < 4 + limits.maxFrame {
            memmove(storage, storage + start, end - start)
            end -= start; start = 0
        }
        return UnsafeMutableRawBufferPointer(start: storage + end, count: capacity - end)
    }

    /// Records that `count` bytes were written into `writableSpace()`.
    public func commit(_ count: Int) { precondition(count >= 0 && end + count <= capacity); end += count }

    /// Copy-in path for tests: appends as many bytes as fit and returns how many.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        let space = writableSpace()
        let n = min(space.count, bytes.count)
        if n > 0 { space.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: n) }
        commit(n)
        return n
    }

    /// Bytes received but not yet returned as frames.
    public var pending: Int { end - start }

    private func lengthAt(_ p: UnsafeMutableRawPointer) -> Int { StreamPrefix.length(at: p) }

    /// The next complete frame (valid until the next `writableSpace`/`append`), or why not.
    public func next() -> DecodeStep {
        let p = storage + start
        switch StreamPrefix.next(p, available: end - start, maxFrame: limits.maxFrame) {
        case .needMore: return .needMore
        case .fatal(let e): return .rejected(e)
        case let .skip(len, e): start += 4 + len; return .rejected(e)
        case .frame(let len):
            start += 4 + len
            return .frame(UnsafeRawBufferPointer(start: p + 4, count: len))
        }
    }

    /// Called at end of stream: a partial frame left over is a truncation.
    public func finish() -> FramingError? {
        let avail = end - start
        guard avail > 0 else { return nil }
        if avail < 4 { return .truncated(have: avail, want: 4) }
        return .truncated(have: avail - 4, want: lengthAt(storage + start))
    }

    public func reset() { start = 0; end = 0 }
}

/// The 4-byte length prefix QEMU expects before each frame, in network order (sent with writev; the frame is not copied).
@inline(__always)
public func streamPrefix(_ length: Int) -> UInt32 { UInt32(truncatingIfNeeded: length).bigEndian }
