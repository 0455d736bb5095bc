// Injection: frames the control side originates (the spanning tree's BPDUs; an IGMP querier's
// queries could use it too) sent out of one port, through the same transmit path as switched
// frames. `Engine.inject` copies the frame into a bounded per-worker ring (a HandoffRing:
// preallocated slots, one producer at a time, the worker the only consumer) and wakes the
// worker through its control eventfd; the worker drains the ring between batches, copying each
// frame into one of its stream buffers and queueing the write. Nothing allocates on the worker
// side. A full ring (or a frame the engine cannot take) is refused and counted, never waited
// for: control traffic is periodic and the next period repeats it.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import Synchronization

/// One worker's queue of injected frames.
final class InjectionQueue: @unchecked Sendable {
    /// Frames waiting per worker; past it `inject` refuses.
    static let capacity = 64
    /// The largest frame that may be injected (a full-size Ethernet frame with a VLAN tag).
    static let maxFrame = 1518

    let ring = HandoffRing(capacity: InjectionQueue.capacity, slotSize: InjectionQueue.maxFrame)
    /// Producers (control threads) take turns; the worker never takes this.
    let producers = Mutex<Void>(())
    let queued = Atomic<UInt64>(0)
    let refused = Atomic<UInt64>(0)
}

/// Counts of `Engine.inject` over all workers.
public struct InjectionStatistics: Sendable, Equatable {
    /// Frames handed to a worker to send.
    public var queued: UInt64 = 0
    /// Frames refused: the worker's queue was full, or the port was not there or not connected.
    public var refused: UInt64 = 0
}

extension Engine {
    /// The most frames `inject` holds per worker before refusing.
    public static var injectionQueueCapacity: Int { InjectionQueue.capacity }

    /// Sends `frame` (a whole Ethernet frame, 14...1518 bytes, no vnet header) out of port
    /// `port` of `bridge`, as is: no handler sees it, no VLAN tag is added or removed. Returns
    /// false, counting it as refused, when the port is not attached or not connected, the
    /// engine is not running, or the worker's queue (`injectionQueueCapacity`) is full. A frame
    /// accepted here can still be dropped at the port like any other (`port-down`,
    /// `queue-full`). Any thread; never waits for the datapath.
    @discardableResult
    public func inject(_ frame: UnsafeRawBufferPointer, bridge: Bridge, port: PortID) -> Bool {
        control.lock()
        guard isRunning, bridge.engine === self, bridge.index < Worker.maxBridges,
              frame.count >= Frame.minimumLength, frame.count <= InjectionQueue.maxFrame,
              let r = bridge.records[Int(port.rawValue)], r.connected, !workers.isEmpty else {
            let w = workers.first
            control.unlock()
            w?.injection.refused.add(1, ordering: .relaxed)
            return false
        }
        let w = workers[r.port.isMultiQueue ? 0 : min(r.owner, workers.count - 1)]
        control.unlock()
        // The ring copies from a Frame; the copy below is on the control side.
        var bytes = [UInt8](frame)
        let pushed = bytes.withUnsafeMutableBytes { buf in
            let f = Frame(bytes: buf, ingress: port)
            return w.injection.producers.withLock { _ in
                w.injection.ring.push(f, bridge: Int32(bridge.index), port: port, asIs: true)
            }
        }
        guard pushed else {
            w.injection.refused.add(1, ordering: .relaxed)
            return false
        }
        w.injection.queued.add(1, ordering: .relaxed)
        var one: UInt64 = 1
        _ = write(w.eventFD, &one, 8)
        return true
    }

    /// `inject` counts since start, summed over the workers.
    public func injectionStatistics() -> InjectionStatistics {
        control.lock(); defer { control.unlock() }
        var s = InjectionStatistics()
        for w in workers {
            s.queued += w.injection.queued.load(ordering: .relaxed)
            s.refused += w.injection.refused.load(ordering: .relaxed)
        }
        return s
    }
}

extension Worker {
    /// Sends the frames `Engine.inject` queued for this worker (on its thread, between batches).
    func drainInjected() {
        injection.ring.drain { entry, bytes in
            guard Int(entry.bridge) < Worker.maxBridges else { return }
            let lp = Int(bridges[Int(entry.bridge)].slotByID[Int(entry.port.rawValue)])
            guard lp >= 0 else { return }
            let (b, addr) = takeStreamBuffer(copying: bytes, count: Int(entry.length))
            guard let addr else {
                ports[lp].counters?.countDrop(.queueFull)
                return
            }
            var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: addr, count: Int(entry.length)),
                              ingress: entry.port)
            send(&frame, to: lp, buffer: b, asIs: true)
            release(b)
        }
    }
}
