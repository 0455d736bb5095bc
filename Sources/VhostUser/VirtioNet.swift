// VirtioNet: what a virtio-net device does with its queues, over `SplitQueue`. Owns the
// virtio-net feature bits this back-end offers (only what is implemented), their names for the
// log, the header size they imply, writing a frame for the guest into its receive buffers
// (12-byte header, num_buffers across mergeable buffers, nothing published until the caller's
// batch ends) and taking a frame the guest transmits (header decoded, the frame left in guest
// memory as iovecs, the chain returned once the caller has consumed it). No allocation here.
import VirtioNet
import Glibc

public enum VirtioNetFeatures {
    public static let csum: UInt64 = 1 << 0
    public static let guestCsum: UInt64 = 1 << 1
    public static let mac: UInt64 = 1 << 5
    public static let guestTSO4: UInt64 = 1 << 7
    public static let guestTSO6: UInt64 = 1 << 8
    public static let guestECN: UInt64 = 1 << 9
    public static let guestUFO: UInt64 = 1 << 10
    public static let hostTSO4: UInt64 = 1 << 11
    public static let hostTSO6: UInt64 = 1 << 12
    public static let hostECN: UInt64 = 1 << 13
    public static let hostUFO: UInt64 = 1 << 14
    public static let mergeableRxBuffers: UInt64 = 1 << 15
    public static let status: UInt64 = 1 << 16
    public static let controlQueue: UInt64 = 1 << 17
    public static let mq: UInt64 = 1 << 22

    /// The offloads a port may offer. Guest-side (GUEST_*) bits say what we may hand the guest;
    /// host-side (CSUM, HOST_*) what the guest may hand us.
    public struct Offloads: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Partial checksums both ways (CSUM + GUEST_CSUM).
        public static let checksum = Offloads(rawValue: 1)
        /// TCP segmentation offload both ways (HOST_TSO4/6 from the guest, GUEST_TSO4/6 to it).
        public static let tso = Offloads(rawValue: 2)
        public static let all: Offloads = [.checksum, .tso]
    }

    /// Device feature bits for a port: MRG_RXBUF always, MQ with several pairs, the offloads
    /// (TSO needs checksum offload: the spec makes HOST_TSO* depend on CSUM, GUEST_TSO* on
    /// GUEST_CSUM).
    public static func device(offloads: Offloads, queuePairs: Int) -> UInt64 {
        var f = mergeableRxBuffers
        if queuePairs > 1 { f |= mq }
        if offloads.contains(.checksum) {
            f |= csum | guestCsum
            if offloads.contains(.tso) { f |= hostTSO4 | hostTSO6 | guestTSO4 | guestTSO6 }
        }
        return f
    }

    /// Names of the bits set in `features` ("VERSION_1 EVENT_IDX MRG_RXBUF ..."), for the log.
    public static func describe(_ features: UInt64) -> String {
        let names: [(UInt64, String)] = [
            (csum, "CSUM"), (guestCsum, "GUEST_CSUM"), (mac, "MAC"), (guestTSO4, "GUEST_TSO4"),
            (guestTSO6, "GUEST_TSO6"), (guestECN, "GUEST_ECN"), (guestUFO, "GUEST_UFO"),
            (hostTSO4, "HOST_TSO4"), (hostTSO6, "HOST_TSO6"), (hostECN, "HOST_ECN"), (hostUFO, "HOST_UFO"),
            (mergeableRxBuffers, "MRG_RXBUF"), (status, "STATUS"), (controlQueue, "CTRL_VQ"), (mq, "MQ"),
            (VirtioFeature.indirectDescriptors, "INDIRECT_DESC"), (VirtioFeature.eventIndex, "EVENT_IDX"),
            (VirtioFeature.protocolFeatures, "PROTOCOL_FEATURES"), (VirtioFeature.version1, "VERSION_1"),
        ]
        var out: [String] = []
        var rest = features
        for (bit, name) in names where features & bit != 0 { out.append(name); rest &= ~bit }
        if rest != 0 { out.append("0x" + String(rest, radix: 16)) }
        return out.isEmpty ? "none" : out.joined(separator: " ")
    }

    /// Bytes of virtio-net header before each frame: 12 with VERSION_1 or MRG_RXBUF, else 10.
    public static func headerSize(_ features: UInt64) -> Int {
        features & (VirtioFeature.version1 | mergeableRxBuffers) != 0 ? 12 : 10
    }
}

/// Receive-queue index of pair `p` (the guest's receiveq N = 2N, transmitq N = 2N+1).
@inlinable public func virtioNetReceiveQueue(_ pair: Int) -> Int { 2 * pair }
@inlinable public func virtioNetTransmitQueue(_ pair: Int) -> Int { 2 * pair + 1 }

/// The outcome of offering a frame to the guest.
public enum VirtioNetReceiveResult: Equatable, Sendable {
    /// Written; `buffers` chains used (num_buffers).
    case delivered(buffers: Int)
    /// The guest has not posted enough receive buffers: the frame is dropped, nothing consumed.
    case noBuffers
    /// (Without MRG_RXBUF) the next buffer is smaller than header + frame: dropped, nothing consumed.
    case bufferTooSmall
}

/// A frame the guest transmitted, still in guest memory.
public struct VirtioNetTransmitFrame {
    public var head: UInt16
    public var header: VirtioNetHeader
    /// The frame's bytes (after the virtio-net header) as iovecs into guest memory; they point
    /// into the `DescriptorChain` it was walked into and stay valid until that chain is reused.
    public var iovecs: UnsafeMutablePointer<iovec>
    public var iovecCount: Int
    public var length: Int
}

extension SplitQueue {
    /// Writes `header` + `frame` into the next receive buffer(s) as used elements; nothing is
    /// visible to the guest until `publishUsed` (the caller batches). With `mergeable` the frame
    /// may span several chains (num_buffers says how many); without it, one chain must hold it.
    public mutating func receive(frame: UnsafeRawBufferPointer, header: VirtioNetHeader, headerSize: Int,
                                 mergeable: Bool, chain: inout DescriptorChain) throws(VirtqueueError) -> VirtioNetReceiveResult {
        var headerBytes: (UInt64, UInt32) = (0, 0)
        return try withUnsafeMutableBytes(of: &headerBytes) { (h) throws(VirtqueueError) -> VirtioNetReceiveResult in
            var hdr = header
            hdr.numBuffers = 1
            hdr.store(to: h.baseAddress!, size: headerSize)
            var two = (iovec(iov_base: h.baseAddress!, iov_len: headerSize),
                       iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count))
            return try withUnsafeMutablePointer(to: &two) { (p) throws(VirtqueueError) -> VirtioNetReceiveResult in
                try p.withMemoryRebound(to: iovec.self, capacity: 2) { (v) throws(VirtqueueError) -> VirtioNetReceiveResult in
                    try receive(segments: v, count: frame.count > 0 ? 2 : 1, headerSize: headerSize, mergeable: mergeable, chain: &chain)
                }
            }
        }
    }

    /// Copies the bytes of `segments` — a virtio-net header of `headerSize` bytes first, then the
    /// frame — into the next receive buffer(s) as used elements (published by the caller's
    /// `publishUsed`). With `headerSize` 12 the header's num_buffers is set to the number of
    /// chains used. Nothing is consumed unless the whole frame fits.
    public mutating func receive(segments: UnsafePointer<iovec>, count: Int, headerSize: Int,
                                 mergeable: Bool, chain: inout DescriptorChain) throws(VirtqueueError) -> VirtioNetReceiveResult {
        var total = 0
        for k in 0..<count { total += segments[k].iov_len }
        var numBuffersAt: (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) = (nil, nil)
        var buffers: UInt16 = 0
        // Source position: segment index and offset in it; bytes copied so far.
        var seg = 0, segOff = 0, written = 0
        while written < total {
            guard let head = try popHead() else {
                unpop(buffers); nextUsed &-= buffers
                return .noBuffers
            }
            try walk(head: head, into: &chain)
            if !mergeable && chain.writableBytes < total {
                unpop(1)
                return .bufferTooSmall
            }
            var inChain = 0
            var i = chain.readableCount
            while i < chain.count && written < total {
                let dst = chain.iovecs[i]
                var off = 0
                while off < dst.iov_len && written < total {
                    while segments[seg].iov_len - segOff == 0 { seg += 1; segOff = 0 }
                    let n = min(dst.iov_len - off, segments[seg].iov_len - segOff)
                    let to = dst.iov_base! + off
                    if headerSize == 12 && written <= 11 && written + n > 10 {
                        // Remember where num_buffers (header bytes 10 and 11) landed.
                        if written <= 10 { numBuffersAt.0 = to + (10 - written) }
                        if written + n > 11 { numBuffersAt.1 = to + (11 - written) }
                    }
                    to.copyMemory(from: segments[seg].iov_base! + segOff, byteCount: n)
                    off += n; segOff += n; written += n; inChain += n
                }
                i += 1
            }
            if inChain == 0 {
                // A receive chain with no device-writable byte cannot carry anything.
                unpop(buffers &+ 1); nextUsed &-= buffers
                throw .receiveChainNotWritable(head)
            }
            putUsed(head: head, length: UInt32(inChain))
            buffers &+= 1
        }
        if headerSize == 12 {
            numBuffersAt.0?.storeBytes(of: UInt8(truncatingIfNeeded: buffers), as: UInt8.self)
            numBuffersAt.1?.storeBytes(of: UInt8(truncatingIfNeeded: buffers >> 8), as: UInt8.self)
        }
        return .delivered(buffers: Int(buffers))
    }

    /// Takes the next frame the guest transmits (nil: none). Its chain must be returned with
    /// `completeTransmit(head:)` once the frame has been consumed (written elsewhere).
    /// A chain shorter than the header comes back with length 0 (the caller counts it
    /// malformed and completes it).
    public mutating func nextTransmit(headerSize: Int, chain: inout DescriptorChain) throws(VirtqueueError) -> VirtioNetTransmitFrame? {
        guard let head = try popHead() else { return nil }
        try walk(head: head, into: &chain)
        var header = VirtioNetHeader()
        if chain.readableBytes < headerSize {
            return VirtioNetTransmitFrame(head: head, header: header, iovecs: chain.iovecs, iovecCount: 0, length: 0)
        }
        // The header may be split over descriptors: gather it, then drop it from the iovecs.
        var raw: (UInt64, UInt32) = (0, 0)
        var need = headerSize
        var first = 0
        withUnsafeMutableBytes(of: &raw) { r in
            var at = 0
            while need > 0 {
                let v = chain.iovecs[first]
                let n = min(need, v.iov_len)
                (r.baseAddress! + at).copyMemory(from: v.iov_base!, byteCount: n)
                at += n; need -= n
                if n == v.iov_len { first += 1 } else {
                    chain.iovecs[first] = iovec(iov_base: v.iov_base! + n, iov_len: v.iov_len - n)
                }
            }
            header = VirtioNetHeader(loadingFrom: r.baseAddress!, size: headerSize)
        }
        return VirtioNetTransmitFrame(head: head, header: header, iovecs: chain.iovecs + first,
                                      iovecCount: chain.readableCount - first,
                                      length: chain.readableBytes - headerSize)
    }

    /// Returns a transmitted chain to the guest (visible at the next `publishUsed`).
    public mutating func completeTransmit(head: UInt16) { putUsed(head: head, length: 0) }
}
