// Counters: per-port and per-worker statistics written by exactly one worker thread each (plain
// relaxed loads/stores, no locked instructions) and summed by readers on any thread.
import CTapbridgeShim
import Frames

/// Layout of one port's counter block for one worker.
enum PortCounter {
    static let rxFrames = 0, rxBytes = 1, txFrames = 2, txBytes = 3, txErrors = 4
    /// Frames longer than 1514 bytes (GSO super-frames or jumbo) received / sent.
    static let rxLarge = 5, txLarge = 6
    static let rxLargest = 7
    /// Stream ports: CLOCK_MONOTONIC ns when the partial frame now held began (0: none). Read by
    /// the engine's health check, which closes a connection stalled mid-frame.
    static let partialSince = 8
    static let firstDrop = 9
    static let count = firstDrop + 256

    /// The counter of drops for `reason`.
    @inline(__always)
    static func drop(_ reason: DropReason) -> Int { firstDrop + Int(reason.rawValue) }
}

/// A single-writer counter array. The writer uses `add`/`max`, readers `load`.
struct CounterBlock {
    let base: UnsafeMutablePointer<UInt64>
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(capacity: count)
        base.initialize(repeating: 0, count: count)
    }

    @inline(__always) func add(_ i: Int, _ n: UInt64) { tb_counter_add(base + i, n) }
    @inline(__always) func max(_ i: Int, _ n: UInt64) { tb_counter_max(base + i, n) }
    @inline(__always) func load(_ i: Int) -> UInt64 { tb_counter_load(base + i) }
    /// Sets a gauge-like slot. Only the block's writer calls it (a relaxed add of the difference).
    @inline(__always) func store(_ i: Int, _ n: UInt64) { tb_counter_add(base + i, n &- tb_counter_load(base + i)) }
    /// One frame dropped for `reason` (a port's block): the one way every drop is counted.
    @inline(__always) func countDrop(_ reason: DropReason) { tb_counter_add(base + PortCounter.drop(reason), 1) }
    func deallocate() { base.deallocate() }
}

/// Per-worker engine counters.
enum WorkerCounter {
    static let loops = 0, submitCalls = 1, submittedSQEs = 2, completions = 3, framesIn = 4
    static let batches = 5, largestBatch = 6, bufferStarved = 7, readRearms = 8, slotsExhausted = 9
    static let portFailures = 10, handedOff = 11, segmented = 12, writesTakenEarly = 13
    static let count = 14
}

/// One port's statistics, summed over workers.
public struct PortStatistics: Sendable, CustomStringConvertible {
    public var id: PortID
    public var name: String
    public var kind: String
    public var connected: Bool
    public var rxFrames: UInt64 = 0, rxBytes: UInt64 = 0
    public var txFrames: UInt64 = 0, txBytes: UInt64 = 0, txErrors: UInt64 = 0
    /// Frames above 1514 bytes (GSO super-frames crossing unsegmented, or jumbo frames).
    public var rxLargeFrames: UInt64 = 0, txLargeFrames: UInt64 = 0
    public var largestRxFrame: UInt64 = 0
    /// Drops by reason: ingress-side reasons (handler verdicts, malformed) count against the
    /// port a frame came in on; egress-side ones (queue-full, port-down, offload, vlan) against
    /// the port it could not leave by.
    public var drops: [DropReason: UInt64] = [:]
    public var totalDrops: UInt64 { drops.values.reduce(0, +) }
    public func drops(_ r: DropReason) -> UInt64 { drops[r] ?? 0 }
    public var description: String {
        let d = drops.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        return "\(name)(\(id)): rx \(rxFrames)/\(rxBytes)B tx \(txFrames)/\(txBytes)B large rx \(rxLargeFrames) tx \(txLargeFrames) drops[\(d)]"
    }
}

public struct BridgeStatistics: Sendable {
    public var name: String
    public var offloads: String
    public var ports: [PortStatistics]
    public func port(named n: String) -> PortStatistics? { ports.first { $0.name == n } }
    public func port(_ id: PortID) -> PortStatistics? { ports.first { $0.id == id } }
}

public struct WorkerStatistics: Sendable {
    public var index: Int
    public var ringSetup: String
    public var readMode: String
    public var loops: UInt64, submitCalls: UInt64, submittedSQEs: UInt64, completions: UInt64
    /// Frames taken from ports, and the number of completion batches they came in.
    public var framesIn: UInt64, batches: UInt64, largestBatch: UInt64
    /// Times the provided-buffer ring ran empty (reads paused until buffers came back).
    public var bufferStarved: UInt64
    public var readRearms: UInt64, slotsExhausted: UInt64, portFailures: UInt64
    /// Frames passed to another worker for a port only it may write (stream sockets).
    public var handedOff: UInt64
    /// TCP super-frames cut into segments in software for a port without TSO.
    public var segmented: UInt64
    /// Write completions handled right after the submit that completed them, ahead of the
    /// read completions queued before them (`Ring.takeCompletions`).
    public var writesTakenEarly: UInt64 = 0
    /// Average frames handled per io_uring_enter.
    public var framesPerSubmit: Double { submitCalls == 0 ? 0 : Double(framesIn) / Double(submitCalls) }
}

public struct EngineSnapshot: Sendable {
    public var bridges: [BridgeStatistics]
    public var workers: [WorkerStatistics]
    /// Ports removed because their descriptor failed (link deleted, ...).
    public var portsRemoved: UInt64
    public func bridge(_ name: String) -> BridgeStatistics? { bridges.first { $0.name == name } }
}
