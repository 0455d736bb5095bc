// FrameImpairer: the `impair` handler. Per port and direction an ImpairSpec (netem's delay,
// jitter, loss, duplicate, reorder, corrupt, rate, limit) turns into a verdict (loss: drop)
// and a `Frame.hold` (delay, rate, duplicate) the engine's timed queue carries out
// (Datapath/WorkerHold.swift). Specs are replaced live: a new table is built off the datapath
// and published atomically (SnapshotPublisher), so each frame sees one complete set.
//
// Hot path: a frame of a port without impairment costs one table load and one index test
// (ingress and, as an egress judge, once per destination). Random state is per worker (no
// sharing, no locks); only the rate's "link busy until" is shared by the workers of a port
// (one compare-and-swap per frame of a rate-limited port), so the rate holds for the port as
// a whole.
#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Frames
import Synchronization

/// What a worker keeps per impaired port and direction: its generator and the memory of the
/// correlated draws and of the loss chain.
struct ImpairWorkerState {
    var rng: ImpairRandom
    var delayDraw = CorrelatedDraw()
    var lossDraw = CorrelatedDraw()
    var duplicateDraw = CorrelatedDraw()
    var reorderDraw = CorrelatedDraw()
    var corruptDraw = CorrelatedDraw()
    var chain = GilbertElliott()
}

/// Per port/direction counters, kept across table swaps: one row per key ("port/direction"),
/// one block of rows per worker (worker index mod `workers`), relaxed atomic increments.
final class ImpairCounters: @unchecked Sendable {
    static let workers = 16
    static let rows = 256
    static let columns = 6
    static let names = ["impair_delayed", "impair_lost", "impair_duplicated", "impair_reordered",
                        "impair_corrupted", "impair_rate_dropped"]
    enum Column { static let delayed = 0, lost = 1, duplicated = 2, reordered = 3, corrupted = 4, rateDropped = 5 }
    let storage: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Control and metrics threads only (never the datapath).
    private let rowByKey = Mutex<[String: Int]>([:])

    init() {
        storage = .allocate(capacity: Self.workers * Self.rows * Self.columns)
        storage.initialize(repeating: .init(0), count: Self.workers * Self.rows * Self.columns)
    }
    deinit { storage.deallocate() }

    /// The row of `key` (control thread); nil when every row is taken.
    func row(for key: String) -> Int? {
        rowByKey.withLock { rows in
            if let r = rows[key] { return r }
            guard rows.count < Self.rows else { return nil }
            rows[key] = rows.count
            return rows.count - 1
        }
    }

    /// The row of `key` if it has one (no new row).
    func peekRow(_ key: String) -> Int? { rowByKey.withLock { $0[key] } }

    @inline(__always)
    func add(_ row: Int, _ column: Int, worker: Int) {
        guard row >= 0 else { return }
        let index: Int = ((worker & (Self.workers - 1)) * Self.rows + row) * Self.columns + column
        UnsafeAtomic<UInt64>(at: storage + index).wrappingIncrement(ordering: .relaxed)
    }

    func total(_ row: Int, _ column: Int) -> UInt64 {
        var sum: UInt64 = 0
        for w in 0..<Self.workers {
            let index: Int = (w * Self.rows + row) * Self.columns + column
            let cell = UnsafeAtomic<UInt64>(at: storage + index)
            sum &+= cell.load(ordering: .relaxed)
        }
        return sum
    }
}

/// One published table: the specs resolved to port IDs, per-worker state, shared rate clocks.
final class ImpairTable: @unchecked Sendable {
    static let workers = 64
    struct Entry {
        var spec: ImpairSpec
        var counterRow: Int
    }
    let count: Int
    let entries: UnsafeMutablePointer<Entry>
    /// PortID.rawValue -> entry index, -1 none.
    let ingressIndex: UnsafeMutablePointer<Int16>
    let egressIndex: UnsafeMutablePointer<Int16>
    let anyIngress: Bool
    let anyEgress: Bool
    let states: UnsafeMutablePointer<ImpairWorkerState>
    let busyUntil: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let counters: ImpairCounters
    let reasons: ImpairReasons

    init(_ list: [(id: PortID, egress: Bool, spec: ImpairSpec, row: Int)], counters: ImpairCounters,
         reasons: ImpairReasons, clockSeed: UInt64) {
        count = list.count
        entries = .allocate(capacity: max(1, count))
        ingressIndex = .allocate(capacity: PortSet.capacity)
        ingressIndex.initialize(repeating: -1, count: PortSet.capacity)
        egressIndex = .allocate(capacity: PortSet.capacity)
        egressIndex.initialize(repeating: -1, count: PortSet.capacity)
        states = .allocate(capacity: max(1, count) * Self.workers)
        busyUntil = .allocate(capacity: max(1, count))
        busyUntil.initialize(repeating: .init(0), count: max(1, count))
        var anyIn = false, anyOut = false
        for (i, e) in list.enumerated() {
            (entries + i).initialize(to: Entry(spec: e.spec, counterRow: e.row))
            let id = Int(e.id.rawValue)
            if id < PortSet.capacity {
                if e.egress { egressIndex[id] = Int16(i); anyOut = true } else { ingressIndex[id] = Int16(i); anyIn = true }
            }
            let base = e.spec.seed ?? clockSeed
            for w in 0..<Self.workers {
                // Reproducible per seed: the worker and direction pick distinct streams.
                let s = base ^ (UInt64(w) &* 0x9E37_79B9_7F4A_7C15) ^ (e.egress ? 0x5DEE_CE66_D1CE_4E5B : 0)
                (states + i * Self.workers + w).initialize(to: ImpairWorkerState(rng: ImpairRandom(seed: s)))
            }
        }
        anyIngress = anyIn; anyEgress = anyOut
        self.counters = counters
        self.reasons = reasons
    }

    deinit {
        entries.deallocate(); ingressIndex.deallocate(); egressIndex.deallocate()
        states.deallocate(); busyUntil.deallocate()
    }
}

/// The drop reasons an impairment counts (registered once per handler, at set-up).
struct ImpairReasons: Sendable {
    let loss = DropReason.register("impair-loss")
    let limit = DropReason.register("impair-limit")
    let rate = DropReason.register("impair-rate")
}

public final class FrameImpairer: EgressFrameHandler, @unchecked Sendable {
    public let name: String
    /// Always true: an egress impairment may be set while running.
    public var judgesEgress: Bool { true }
    private let published: SnapshotPublisher<ImpairTable>
    private let counterStore = ImpairCounters()
    private let reasons = ImpairReasons()
    private var specs: [String: ImpairSpec]
    private var ports = PortTable.empty
    private var generation: UInt64 = 0

    /// - Parameter ports: impairment per port name (ports of the bridge).
    public init(name: String = "impair", ports specs: [String: ImpairSpec] = [:]) {
        self.name = name
        self.specs = specs
        published = SnapshotPublisher(ImpairTable([], counters: counterStore, reasons: reasons, clockSeed: 0))
        publish()
    }

    // MARK: hot path

    public func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        published.withCurrent { t in
            guard t.anyIngress else { return .continue }
            let i = Int(t.ingressIndex[Int(frame.ingress.rawValue) & (PortSet.capacity - 1)])
            guard i >= 0 else { return .continue }
            return Self.impair(t, i, &frame, context)
        }
    }

    public func handleEgress(_ frame: inout Frame, to port: PortID, context: HandlerContext) -> Verdict {
        published.withCurrent { t in
            guard t.anyEgress else { return .continue }
            let i = Int(t.egressIndex[Int(port.rawValue) & (PortSet.capacity - 1)])
            guard i >= 0 else { return .continue }
            return Self.impair(t, i, &frame, context)
        }
    }

    /// One frame through entry `i`: loss, corruption, delay and jitter, reorder, rate,
    /// duplication, in netem's order. Sets `frame.hold`; drops only for loss or a full rate queue.
    @inline(never)
    static func impair(_ t: ImpairTable, _ i: Int, _ frame: inout Frame, _ context: HandlerContext) -> Verdict {
        let e = t.entries + i
        let spec = e.pointee.spec
        let row = e.pointee.counterRow
        let w = context.worker
        let c = t.counters
        let st = t.states + i * ImpairTable.workers + (w & (ImpairTable.workers - 1))
        // A copy already held (by an ingress impairment) is impaired from its release time on.
        let base = max(context.now, frame.hold.until)

        if let loss = spec.loss {
            let lost: Bool
            switch loss {
            case .random(let chance): lost = st.pointee.lossDraw.happens(&st.pointee.rng, chance)
            case .gilbertElliott(let p, let r, let bad, let good):
                lost = st.pointee.chain.lose(&st.pointee.rng, p: p, r: r, lossBad: bad, lossGood: good)
            }
            if lost {
                c.add(row, ImpairCounters.Column.lost, worker: w)
                return .drop(t.reasons.loss)
            }
        }
        if let chance = spec.corrupt, frame.bytes.count > Frame.minimumLength,
           st.pointee.corruptDraw.happens(&st.pointee.rng, chance) {
            // One bit past the Ethernet header (the bridge's own forwarding stays intact).
            let span = frame.bytes.count - Frame.minimumLength
            let at = Frame.minimumLength + st.pointee.rng.below(span)
            frame.bytes[at] ^= UInt8(1) << UInt8(st.pointee.rng.below(8))
            c.add(row, ImpairCounters.Column.corrupted, worker: w)
        }
        var delay = spec.delay
        if spec.jitter > 0 {
            let u = st.pointee.delayDraw.next(&st.pointee.rng, correlation: spec.delayCorrelation)
            let z = spec.distribution.variate(u, st.pointee.rng.unit())
            let d = Double(spec.delay) + Double(spec.jitter) * z
            delay = d <= 0 ? 0 : UInt64(min(d, Double(ImpairSpec.maxDelay)))
        }
        if let chance = spec.reorder, delay > 0, st.pointee.reorderDraw.happens(&st.pointee.rng, chance) {
            delay = 0
            c.add(row, ImpairCounters.Column.reordered, worker: w)
        }
        var until: UInt64 = delay > 0 ? base &+ delay : frame.hold.until
        if spec.rate > 0 {
            let tx = RateLink.transmissionTime(bytes: frame.bytes.count, overhead: spec.overhead, rate: spec.rate)
            // Queue no more than `limit` frames' worth (and what the worker can hold).
            var frames = UInt64(spec.limit)
            if context.holdCapacity > 0 { frames = min(frames, UInt64(context.holdCapacity)) }
            let backlogBound = frames &* tx
            let busy = UnsafeAtomic<UInt64>(at: t.busyUntil + i)
            var seen = busy.load(ordering: .relaxed)
            while true {
                let (leaves, queued) = RateLink.departure(now: base, delay: delay, busyUntil: seen, transmission: tx)
                if queued > backlogBound {
                    c.add(row, ImpairCounters.Column.rateDropped, worker: w)
                    return .drop(t.reasons.rate)
                }
                let (done, original) = busy.compareExchange(expected: seen, desired: leaves, ordering: .relaxed)
                if done { until = leaves; break }
                seen = original
            }
        }
        if until > context.now { c.add(row, ImpairCounters.Column.delayed, worker: w) }
        var duplicates = frame.hold.duplicates
        if let chance = spec.duplicate, st.pointee.duplicateDraw.happens(&st.pointee.rng, chance) {
            duplicates = 1
            c.add(row, ImpairCounters.Column.duplicated, worker: w)
        }
        frame.hold = FrameHold(until: until, limit: spec.limit, duplicates: duplicates,
                               limitReason: spec.rate > 0 ? t.reasons.rate : t.reasons.limit)
        return .continue
    }

    // MARK: control thread

    /// The impairments in force, per port name.
    public var current: [String: ImpairSpec] { specs }
    /// Bumped by every change.
    public var currentGeneration: UInt64 { generation }

    /// Sets (or, with a spec that does nothing, clears) port `port`'s impairment; atomic.
    public func set(port: String, _ spec: ImpairSpec) {
        if spec.isNoOp { specs[port] = nil } else { specs[port] = spec }
        publish()
    }

    /// Removes port `port`'s impairment (true if it had one).
    @discardableResult
    public func clear(port: String) -> Bool {
        let had = specs.removeValue(forKey: port) != nil
        publish()
        return had
    }

    /// Replaces every impairment at once (a reload).
    public func replaceAll(_ new: [String: ImpairSpec]) {
        specs = new.filter { !$0.value.isNoOp }
        publish()
    }

    public func portsChanged(_ table: PortTable) {
        ports = table
        publish()
    }

    private func publish() {
        generation += 1
        var list: [(id: PortID, egress: Bool, spec: ImpairSpec, row: Int)] = []
        for name in specs.keys.sorted() {
            guard let spec = specs[name], let id = ports.port(named: name)?.id else { continue }
            if spec.direction != .egress, let row = counterStore.row(for: name + "/ingress") {
                list.append((id, false, spec, row))
            }
            if spec.direction != .ingress, let row = counterStore.row(for: name + "/egress") {
                list.append((id, true, spec, row))
            }
        }
        published.publish(ImpairTable(list, counters: counterStore, reasons: reasons,
                                      clockSeed: MonotonicClock.nanoseconds() ^ 0xA076_1D64_78BD_642F))
    }

    /// Counters of one port (all zero if never impaired): delayed, lost, duplicated, reordered,
    /// corrupted, rate-dropped, summed over both directions.
    public func counters(port: String) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for (c, n) in ImpairCounters.names.enumerated() {
            var v: UInt64 = 0
            for d in ["ingress", "egress"] { if let r = counterStore.peekRow(port + "/" + d) { v &+= counterStore.total(r, c) } }
            out[String(n.dropFirst("impair_".count))] = v
        }
        return out
    }

    public func counters() -> [HandlerCounter] {
        var out: [HandlerCounter] = []
        for name in specs.keys.sorted() {
            guard let spec = specs[name] else { continue }
            for d in [ImpairDirection.ingress, .egress] where spec.direction == d || spec.direction == .both {
                guard let r = counterStore.peekRow(name + "/" + d.rawValue) else { continue }
                let labels = ["impair": self.name, "port": name, "direction": d.rawValue]
                for (c, n) in ImpairCounters.names.enumerated() {
                    out.append(HandlerCounter(n, counterStore.total(r, c), labels: labels))
                }
            }
        }
        return out
    }
}

