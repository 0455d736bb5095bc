// EtherTypeCounter: counts frames per EtherType (after any VLAN tags) and drops one chosen
// EtherType. Everything else continues to the next handler (e.g. the learning switch).
//
// The pattern worth copying: counters live in preallocated rows, one row per worker thread,
// so concurrent workers never write the same memory and `handle` neither locks nor allocates.
import TapbridgeHandlers

public final class EtherTypeCounter: FrameHandler, @unchecked Sendable {
    public let name = "ethertype-counter"
    /// The EtherTypes counted one by one; anything else counts as "other".
    public let watched: [UInt16]
    /// Frames of this EtherType are dropped (and still counted).
    public let blocked: UInt16?
    /// A drop reason of our own, registered once, shown in the engine's drop counters.
    public static let blockedReason = DropReason.register("ethertype-blocked")

    static let maxWorkers = 64
    private let columns: Int
    private let rows: UnsafeMutablePointer<UInt64>

    public init(watching watched: [UInt16] = [EtherType.ipv4, EtherType.arp, EtherType.ipv6], blocking blocked: UInt16? = nil) {
        self.watched = watched
        self.blocked = blocked
        columns = watched.count + 1
        rows = .allocate(capacity: Self.maxWorkers * columns)
        rows.initialize(repeating: 0, count: Self.maxWorkers * columns)
    }

    deinit { rows.deallocate() }

    public func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        // A truncated VLAN stack has no EtherType to speak of: count it as "other".
        let type = frame.payload?.etherType
        var column = watched.count
        if let type, let i = watched.firstIndex(of: type) { column = i }
        rows[(context.worker % Self.maxWorkers) * columns + column] &+= 1
        if let blocked, type == blocked { return .drop(Self.blockedReason) }
        return .continue
    }

    /// Frames seen per EtherType ("0x0800", ..., "other"), summed over workers.
    public func counts() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for c in 0..<columns {
            var sum: UInt64 = 0
            for w in 0..<Self.maxWorkers { sum &+= rows[w * columns + c] }
            out[c < watched.count ? hex(watched[c]) : "other"] = sum
        }
        return out
    }

    public func counters() -> [HandlerCounter] {
        counts().map { HandlerCounter("frames_by_ethertype", $0.value, labels: ["ethertype": $0.key]) }
    }

    private func hex(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: 4 - s.count) + s
    }
}
