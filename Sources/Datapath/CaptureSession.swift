// CaptureSession: one running capture of some ports of a bridge. Owns one CaptureTap (ring)
// per worker, the writer, and the capture thread that drains the rings into the writer. The
// workers hold the taps unretained; the session outlives their use (`stop` first has every
// worker forget them, then drains what is left and closes the output).
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Dispatch
import Foundation
import Frames
import PacketFilter
import Synchronization
import CTapbridgeShim

public struct CaptureOptions: Sendable {
    public var format: CaptureFormat = .pcapng
    /// Bytes kept of each frame (tcpdump -s); also bounded by half a ring.
    public var snaplen = CaptureWriter.maxSnaplen
    /// Stop writing after this many frames (tcpdump -c); nil: until stopped.
    public var count: Int? = nil
    /// Ring size per worker (bytes, a power of two >= 64 KiB). Frames that find it full are
    /// dropped and counted.
    public var ringBytes = 4 << 20
    /// How long the capture thread sleeps when every ring is empty.
    public var idleMicroseconds: UInt32 = 2000
    public init() {}
}

public struct CaptureSummary: Sendable, Equatable, CustomStringConvertible {
    /// Frames written to the output.
    public var captured: UInt64
    /// Frames that matched but found the ring full.
    public var dropped: UInt64
    /// Frames the expression did not match.
    public var filteredOut: UInt64
    /// Files written (rotation), empty for a descriptor.
    public var files: [String]
    public var description: String {
        "\(captured) frame\(captured == 1 ? "" : "s") captured, \(dropped) dropped"
    }
}

public final class CaptureSession: @unchecked Sendable {
    /// The captured ports' names: pcapng interface i is `interfaces[i]`.
    public let interfaces: [String]
    public let direction: CaptureDirection
    let bridge: Bridge
    /// Held strongly: `stop` needs the engine even if its owner let go of it first.
    let engine: Engine
    let ports: [PortID]
    let taps: [CaptureTap]
    private let writer: CaptureWriter
    private let limit: UInt64
    private let idle: UInt32
    private let stopRequested = Atomic<Bool>(false)
    private let finishedFlag = Atomic<Bool>(false)
    private let writtenCount = Atomic<UInt64>(0)
    private let finished = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stopped: CaptureSummary?
    private var failure: CaptureError?
    /// Frames written per interface (capture thread only).
    private var perInterface: [UInt64]

    init(bridge: Bridge, ports: [PortID], names: [String], direction: CaptureDirection, filter: PcapProgram?,
         destination: CaptureDestination, options: CaptureOptions, workers: Int) throws {
        self.bridge = bridge; self.engine = bridge.engine; self.ports = ports; self.interfaces = names; self.direction = direction
        perInterface = [UInt64](repeating: 0, count: names.count)
        limit = options.count.map { UInt64(max(0, $0)) } ?? UInt64.max
        idle = max(100, options.idleMicroseconds)
        taps = (0..<max(1, workers)).map { _ in
            CaptureTap(ring: CaptureRing(bytes: options.ringBytes), filter: filter, snaplen: options.snaplen)
        }
        writer = try CaptureWriter(format: options.format, interfaces: names, snaplen: taps[0].snaplen,
                                   destination: destination)
        writer.shouldGiveUp = { [unowned self] in self.stopRequested.load(ordering: .relaxed) }
    }

    func startThread() {
        let t = Thread { [self] in self.run() }
        t.name = "tapbridge-capture"
        t.start()
    }

    /// Frames written so far.
    public var captured: UInt64 { writtenCount.load(ordering: .relaxed) }
    /// Frames dropped so far because a ring was full.
    public var dropped: UInt64 { taps.reduce(0) { $0 + $1.ring.dropped } }
    public var filteredOut: UInt64 { taps.reduce(0) { $0 + $1.filteredOut } }
    /// Why the capture ended early (output closed or failed), if it did.
    public var error: CaptureError? { lock.withLock { failure } }
    /// The count was reached or the output failed: nothing more will be written.
    public var isFinished: Bool { finishedFlag.load(ordering: .acquiring) }

    /// Waits until the capture finished by itself (count reached, output failed) or `timeout`
    /// seconds passed. True if it finished.
    public func wait(timeout: Double) -> Bool {
        if isFinished { return true }
        guard finished.wait(timeout: .now() + timeout) == .success else { return false }
        finished.signal()   // let other waiters through too
        return true
    }

    /// Stops capturing (the workers drop their taps), writes out what the rings still hold
    /// (up to the count) and closes files. Idempotent; returns the final counts.
    @discardableResult
    public func stop() -> CaptureSummary {
        lock.lock()
        if let s = stopped { lock.unlock(); return s }
        lock.unlock()
        engine.endCapture(self)
        stopRequested.store(true, ordering: .releasing)
        exited.wait()
        exited.signal()
        let s = CaptureSummary(captured: captured, dropped: dropped, filteredOut: filteredOut, files: writer.filesOpened)
        lock.withLock { stopped = s }
        return s
    }

    // MARK: capture thread

    private func run() {
        tb_set_thread_name("tb-capture")
        flushQuietly()   // the file header goes out at once: a reader on a pipe starts now
        while !stopRequested.load(ordering: .acquiring) {
            if drainAll() == 0 { usleep(idle) }
        }
        // The workers have let go of the taps: what is in the rings now is all there is.
        drainAll()
        writeStatistics()
        do { try writer.finish() } catch let e as CaptureError { fail(e) } catch {}
        markFinished()
        exited.signal()
    }

    /// Writes (or, once finished, discards) every queued record; flushes when anything was written.
    @discardableResult
    private func drainAll() -> Int {
        var total = 0
        var wrote = false
        for tap in taps {
            total += tap.ring.drain { interface, direction, ts, original, data in
                guard !isFinished else { return }
                do {
                    try writer.write(interface: interface, direction: direction, timestamp: ts,
                                     originalLength: original, data: data)
                } catch let e as CaptureError { fail(e); return } catch { return }
                wrote = true
                if Int(interface) < perInterface.count { perInterface[Int(interface)] += 1 }
                if writtenCount.add(1, ordering: .relaxed).newValue >= limit {
                    flushQuietly()
                    markFinished()
                }
            }
        }
        if wrote && !isFinished { flushQuietly() }
        return total
    }

    /// pcapng: one statistics block per interface (frames written; the drops, which rings do not
    /// attribute to a port, on the first), so stream readers such as the CLI learn the counts.
    private func writeStatistics() {
        guard error == nil else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let now = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        let drops = dropped
        for i in interfaces.indices {
            let comment = i == 0 ? "tapbridge: \(captured) captured, \(drops) dropped, \(filteredOut) filtered out" : nil
            do {
                try writer.writeStatistics(interface: UInt16(i), timestamp: now, received: perInterface[i],
                                           dropped: i == 0 ? drops : 0, comment: comment)
            } catch let e as CaptureError { fail(e); return } catch { return }
        }
    }

    private func flushQuietly() {
        do { try writer.flush() } catch let e as CaptureError { fail(e) } catch {}
    }

    private func fail(_ e: CaptureError) {
        lock.withLock { if failure == nil { failure = e } }
        markFinished()
    }

    private func markFinished() {
        if !finishedFlag.exchange(true, ordering: .acquiringAndReleasing) { finished.signal() }
    }
}
