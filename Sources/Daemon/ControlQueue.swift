// ControlQueue: hands control-socket commands from the server's connection threads to the
// daemon's control loop, which owns every piece of daemon state (config, links, engine
// bindings). A connection thread enqueues a closure, wakes the loop (StopSignal.wake) and waits
// for the result; the loop runs queued work between its other duties. The datapath never waits.
import Control
import Foundation

final class ControlQueue: @unchecked Sendable {
    private final class Item {
        let work: () throws -> ControlReply
        var state = State.queued
        var result: Result<ControlReply, Error>?
        let done = DispatchSemaphore(value: 0)
        init(_ work: @escaping () throws -> ControlReply) { self.work = work }
    }
    private enum State { case queued, running, finished, abandoned }

    private let lock = NSLock()
    private var items: [Item] = []
    private var closed = false
    private let wake: () -> Void

    init(wake: @escaping () -> Void) { self.wake = wake }

    /// Runs `work` on the control loop and returns its reply (any thread but the loop's).
    /// Waits at most `timeout` for the loop to pick it up; work already running is waited for.
    func run(timeout: Double = 20, _ work: @escaping () throws -> ControlReply) throws -> ControlReply {
        let item = Item(work)
        let accepted = lock.withLock { () -> Bool in
            if closed { return false }
            items.append(item)
            return true
        }
        guard accepted else { throw ControlError(.timeout, "the daemon is stopping") }
        wake()
        if item.done.wait(timeout: .now() + timeout) == .timedOut {
            let abandoned = lock.withLock { () -> Bool in
                guard item.state == .queued else { return false }
                item.state = .abandoned
                return true
            }
            if abandoned { throw ControlError(.timeout, "the daemon's control loop did not take the command within \(Int(timeout)) s") }
            item.done.wait()   // it started: its effect must be reported
        }
        switch item.result {
        case .success(let r): return r
        case .failure(let e): throw e
        case nil: throw ControlError(.timeout, "the daemon is stopping")
        }
    }

    /// Runs everything queued (control loop only).
    func drain() {
        let batch = lock.withLock { () -> [Item] in defer { items = [] }; return items }
        for item in batch {
            let go = lock.withLock { () -> Bool in
                guard item.state == .queued else { return false }
                item.state = .running
                return true
            }
            guard go else { continue }
            item.result = Result { try item.work() }
            lock.withLock { item.state = .finished }
            item.done.signal()
        }
    }

    /// Refuses new work and fails what is still queued (the daemon is stopping).
    func close() {
        let pending = lock.withLock { () -> [Item] in
            closed = true
            defer { items = [] }
            return items
        }
        for item in pending {
            let fail = lock.withLock { () -> Bool in
                guard item.state == .queued else { return false }
                item.state = .finished
                return true
            }
            if fail { item.done.signal() }
        }
    }
}
