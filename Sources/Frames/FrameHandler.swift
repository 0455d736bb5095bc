// FrameHandler: the public plug-in seam. A bridge runs its handlers in order on every frame;
// the first verdict other than `.continue` decides.

/// Per-batch facts a handler may need; passed by value, nothing reference-counted.
public struct HandlerContext: Sendable {
    /// Monotonic clock in nanoseconds, sampled once per batch of frames (CLOCK_MONOTONIC).
    public var now: UInt64
    /// Index of the worker thread running the pipeline (0..<workers).
    public var worker: Int
    /// Frame copies this worker can hold (`Frame.hold`) per egress port at most, whatever a
    /// handler's own limit (0: unknown, as in tests without an engine).
    public var holdCapacity: Int = 0
    public init(now: UInt64, worker: Int = 0) { self.now = now; self.worker = worker }
}

/// A named counter a handler exports (FDB size, rule hits, ...).
public struct HandlerCounter: Sendable, Equatable {
    public var name: String
    public var value: UInt64
    /// Labels such as ["rule": "3"]; empty for a plain counter.
    public var labels: [String: String]
    public init(_ name: String, _ value: UInt64, labels: [String: String] = [:]) {
        self.name = name; self.value = value; self.labels = labels
    }
}

/// A stage of a bridge's frame pipeline.
///
/// Threading: `handle` runs on the datapath worker threads, possibly on several at once (one
/// per worker), and must neither block nor allocate; keep shared state in preallocated storage
/// with atomics (see `LearningSwitch`'s FDB) or per worker (`context.worker`). `portsChanged`
/// and `counters` are called from the control thread.
public protocol FrameHandler: AnyObject {
    /// Short name for logs and counters ("learning-switch", "filter").
    var name: String { get }
    /// Decide what happens to `frame`. May rewrite its bytes in place.
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict
    /// The bridge's ports changed. Called before the first frame from a new port, and after a
    /// port is gone (forget what you knew about it).
    func portsChanged(_ ports: PortTable)
    /// Current counters, read from outside the datapath.
    func counters() -> [HandlerCounter]
}

extension FrameHandler {
    public func portsChanged(_ ports: PortTable) {}
    public func counters() -> [HandlerCounter] { [] }
}

/// A handler that can also judge frames at a port's egress: after the pipeline chose the
/// destinations, `handleEgress` runs once per destination port; `.drop` removes that port
/// (counted against it), anything else lets the copy leave. Only handlers whose
/// `judgesEgress` is true at pipeline construction are called there.
public protocol EgressFrameHandler: FrameHandler {
    var judgesEgress: Bool { get }
    func handleEgress(_ frame: inout Frame, to port: PortID, context: HandlerContext) -> Verdict
}

/// A bridge's handlers in order. `run` returns the first decisive verdict; if every handler
/// says `.continue`, the frame is flooded (a bridge with no deciding handler acts as a hub).
public final class HandlerPipeline {
    /// The handlers, strongly held for the pipeline's lifetime.
    public let handlers: [any FrameHandler]
    public let fallthroughVerdict: Verdict

    /// The hot path's view of `handlers`: one box per handler, typed with the handler's concrete
    /// class, held as Unmanaged and called through `_withUnsafeGuaranteedRef`. Running a frame
    /// through the pipeline thus costs no retain/release; iterating `[any FrameHandler]` cost
    /// two per frame, and an existential loaded from any storage one (checked with callgrind).
    @usableFromInline let stages: UnsafeMutableBufferPointer<Unmanaged<PipelineStage>>
    /// The egress judges (handlers with `judgesEgress`), same calling scheme.
    @usableFromInline let egressStages: UnsafeMutableBufferPointer<Unmanaged<PipelineStage>>
    /// Whether any handler judges egress (the datapath's one test when none does).
    public let hasEgressStages: Bool

    public init(_ handlers: [any FrameHandler], whenUndecided: Verdict = .flood) {
        self.handlers = handlers
        self.fallthroughVerdict = whenUndecided
        stages = .allocate(capacity: handlers.count)
        for (i, h) in handlers.enumerated() {
            (stages.baseAddress! + i).initialize(to: .passRetained(Self.stage(for: h)))
        }
        let judges = handlers.compactMap { $0 as? any EgressFrameHandler }.filter(\.judgesEgress)
        egressStages = .allocate(capacity: judges.count)
        for (i, h) in judges.enumerated() {
            (egressStages.baseAddress! + i).initialize(to: .passRetained(Self.egressStage(for: h)))
        }
        hasEgressStages = !judges.isEmpty
    }

    /// Opens the existential once, at set-up, so the box knows the concrete handler type.
    static func stage<H: FrameHandler>(for handler: H) -> PipelineStage { TypedPipelineStage(handler) }
    static func egressStage<H: EgressFrameHandler>(for handler: H) -> PipelineStage { TypedEgressStage(handler) }

    deinit {
        for s in stages { s.release() }
        stages.deallocate()
        for s in egressStages { s.release() }
        egressStages.deallocate()
    }

    @inlinable
    public func run(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        var i = 0
        while i < stages.count {
            let v = stages[i]._withUnsafeGuaranteedRef { $0.run(&frame, context) }
            if case .continue = v { i += 1; continue }
            return v
        }
        return fallthroughVerdict
    }

    /// The egress verdict for one destination: the first `.drop` of an egress judge, else
    /// `.continue`.
    @inlinable
    public func runEgress(_ frame: inout Frame, to port: PortID, context: HandlerContext) -> Verdict {
        var i = 0
        while i < egressStages.count {
            let v = egressStages[i]._withUnsafeGuaranteedRef { $0.runEgress(&frame, port, context) }
            if case .drop = v { return v }
            i += 1
        }
        return .continue
    }

    public func portsChanged(_ ports: PortTable) { for h in handlers { h.portsChanged(ports) } }
}

/// A pipeline stage: calls one handler. The subclass knows the handler's concrete type, so the
/// call reads a `let` of a guaranteed `self` and needs no reference counting.
@usableFromInline class PipelineStage {
    @usableFromInline func run(_ frame: inout Frame, _ context: HandlerContext) -> Verdict { .continue }
    @usableFromInline func runEgress(_ frame: inout Frame, _ port: PortID, _ context: HandlerContext) -> Verdict { .continue }
}

@usableFromInline final class TypedPipelineStage<H: FrameHandler>: PipelineStage {
    @usableFromInline let handler: H
    init(_ handler: H) { self.handler = handler }
    @usableFromInline override func run(_ frame: inout Frame, _ context: HandlerContext) -> Verdict {
        handler.handle(&frame, context: context)
    }
}

/// An egress judge's stage, typed like `TypedPipelineStage`: no cast, no retain per call.
@usableFromInline final class TypedEgressStage<H: EgressFrameHandler>: PipelineStage {
    @usableFromInline let handler: H
    init(_ handler: H) { self.handler = handler }
    @usableFromInline override func runEgress(_ frame: inout Frame, _ port: PortID, _ context: HandlerContext) -> Verdict {
        handler.handleEgress(&frame, to: port, context: context)
    }
}
