// MetricsExporter: the Prometheus text served at /metrics, built at scrape time from what the
// engine already keeps (Engine.snapshot(): per-port and per-worker counters written by their
// worker with plain stores), the handlers' counters() and the worker threads' CPU time from
// /proc. Nothing is added to the datapath: a scrape only reads. Engine and port counters go
// into a fresh PrometheusCollectorRegistry per scrape (so a removed port disappears and values
// are the snapshot's exactly); the daemon's own events (reloads, ports lost, links reclaimed)
// are swift-metrics counters in a long-lived registry, bootstrapped once per process. The
// endpoint's own connection outcomes (answered, refused while busy, timed out) come last.
import CoreMetrics
import Datapath
import Foundation
import Frames
import Prometheus

public enum DaemonMetrics {
    /// The registry behind swift-metrics' MetricsSystem in this process (nil until bootstrapped).
    nonisolated(unsafe) private(set) static var registry: PrometheusCollectorRegistry?
    private static let lock = NSLock()

    /// Routes swift-metrics to a Prometheus registry (once per process; later calls reuse it).
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry {
        lock.withLock {
            if let registry { return registry }
            let r = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: r))
            registry = r
            return r
        }
    }

    /// Counts a daemon event (`tapbridge_reloads_total`...); a no-op before `bootstrap`.
    public static func count(_ label: String, _ dimensions: [(String, String)] = [], by amount: Int64 = 1) {
        guard registry != nil else { return }
        CoreMetrics.Counter(label: label, dimensions: dimensions).increment(by: amount)
    }

    /// True once `bootstrap` ran (a daemon with a metrics endpoint).
    public static var isBootstrapped: Bool { lock.withLock { registry != nil } }
}

/// A handler's counters as read on the control thread.
public struct HandlerCounters {
    public var bridge: String
    public var handler: String
    public var counters: [HandlerCounter]
    public init(bridge: String, handler: String, counters: [HandlerCounter]) {
        self.bridge = bridge; self.handler = handler; self.counters = counters
    }
}

public enum MetricsExporter {
    /// Handler counters that are levels, not totals.
    static let handlerGauges: Set<String> = ["fdb_entries", "fdb_capacity", "mdb_entries", "mdb_capacity", "filter_generation", "filter_rule_last_hit_ns",
                                             "stp_is_root", "stp_port_state", "guard_blocked_ports"]

    static let portCounters: [(String, String, KeyPath<PortStatistics, UInt64>)] = [
        ("tapbridge_port_rx_frames_total", "Frames received on the port.", \.rxFrames),
        ("tapbridge_port_rx_bytes_total", "Bytes received on the port.", \.rxBytes),
        ("tapbridge_port_tx_frames_total", "Frames sent by the port.", \.txFrames),
        ("tapbridge_port_tx_bytes_total", "Bytes sent by the port.", \.txBytes),
        ("tapbridge_port_tx_errors_total", "Writes the kernel refused on the port.", \.txErrors),
        ("tapbridge_port_rx_large_frames_total", "Frames above 1514 bytes received (GSO super-frames).", \.rxLargeFrames),
        ("tapbridge_port_tx_large_frames_total", "Frames above 1514 bytes sent (GSO super-frames).", \.txLargeFrames),
    ]

    static let workerCounters: [(String, String, KeyPath<WorkerStatistics, UInt64>)] = [
        ("tapbridge_worker_loops_total", "Worker loop iterations (one io_uring wait each).", \.loops),
        ("tapbridge_worker_ring_submits_total", "io_uring_enter calls that submitted work.", \.submitCalls),
        ("tapbridge_worker_ring_sqes_total", "Submission queue entries submitted.", \.submittedSQEs),
        ("tapbridge_worker_completions_total", "Completions handled.", \.completions),
        ("tapbridge_worker_frames_total", "Frames taken from ports.", \.framesIn),
        ("tapbridge_worker_batches_total", "Completion batches the frames came in (frames/batches = mean batch size).", \.batches),
        ("tapbridge_worker_buffer_starved_total", "Times the provided-buffer ring ran empty.", \.bufferStarved),
        ("tapbridge_worker_handoffs_total", "Frames passed to the worker owning a stream port.", \.handedOff),
        ("tapbridge_worker_segmented_total", "TCP super-frames segmented in software.", \.segmented),
        ("tapbridge_worker_writes_taken_early_total", "Write completions handled right after their submit, ahead of queued reads.", \.writesTakenEarly),
    ]

    public static func render(snapshot: EngineSnapshot, handlers: [HandlerCounters], workerCPU: [Int: Double],
                              endpoint: MetricsServer.Statistics? = nil, daemon: PrometheusCollectorRegistry?) -> String {
        let r = PrometheusCollectorRegistry()
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ v: UInt64) {
            r.makeCounter(descriptor: descriptor(name, help), labels: labels).increment(by: Int64(clamping: v))
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ v: Double) {
            r.makeGauge(descriptor: descriptor(name, help), labels: labels).set(v)
        }
        for b in snapshot.bridges {
            for p in b.ports {
                let l = [("bridge", b.name), ("port", p.name)]
                for (name, help, value) in portCounters { counter(name, help, l, p[keyPath: value]) }
                gauge("tapbridge_port_connected", "1 if the port has its descriptors, 0 while disconnected.", l, p.connected ? 1 : 0)
                for (reason, n) in p.drops.sorted(by: { $0.key.name < $1.key.name }) {
                    counter("tapbridge_port_drops_total", "Frames dropped, by reason, against the port.",
                            l + [("reason", reason.name)], n)
                }
            }
        }
        for w in snapshot.workers {
            let l = [("worker", String(w.index))]
            for (name, help, value) in workerCounters { counter(name, help, l, w[keyPath: value]) }
            gauge("tapbridge_worker_batch_size_max", "Largest completion batch seen.", l, Double(w.largestBatch))
            if let cpu = workerCPU[w.index] {
                r.makeCounter(descriptor: descriptor("tapbridge_worker_busy_seconds_total",
                                                     "CPU time of the worker thread (user+system); idle waiting in io_uring is not counted."),
                              labels: l)
                    .increment(by: cpu)
            }
        }
        counter("tapbridge_ports_removed_total", "Ports the engine removed because their descriptor failed.", [],
                snapshot.portsRemoved)
        for h in handlers {
            for c in h.counters {
                var labels = [("bridge", h.bridge), ("handler", h.handler)]
                for (k, v) in c.labels.sorted(by: { $0.key < $1.key }) where !labels.contains(where: { $0.0 == k }) {
                    labels.append((k, v))
                }
                let base = "tapbridge_" + sanitize(c.name)
                if handlerGauges.contains(c.name) {
                    gauge(base, "Handler level \(c.name).", labels, Double(c.value))
                } else {
                    counter(base + "_total", "Handler counter \(c.name).", labels, c.value)
                }
            }
        }
        if let e = endpoint {
            let help = "Connections to the metrics endpoint, by outcome (refused_busy: every slot taken, answered 503)."
            for (outcome, n) in [("answered", e.answered), ("refused_busy", e.refusedBusy), ("timed_out", e.timedOut)] {
                counter("tapbridge_metrics_connections_total", help, [("outcome", outcome)], n)
            }
        }
        var text = r.emitToString()
        if let daemon { text += daemon.emitToString() }
        return sortedFamilies(text)
    }

    /// A family's name and help for the registry: `..._total` as metric name + unit `total`, the
    /// rest as a unitless name (the exposition shows the same full name either way).
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        if name.hasSuffix("_total") {
            return MetricNameDescriptor(metricName: String(name.dropLast("_total".count)), unitName: "total", helpText: help)
        }
        return MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The registry emits families and series in dictionary order; a person reading a scrape
    /// (or diffing two) wants them sorted: families by name, series within each by text.
    static func sortedFamilies(_ text: String) -> String {
        var families: [(name: String, comments: [Substring], samples: [Substring])] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#") {
                let name = String(line.split(separator: " ").dropFirst(2).first ?? "")
                if families.last?.name != name { families.append((name, [], [])) }
                families[families.count - 1].comments.append(line)
            } else if !families.isEmpty {
                families[families.count - 1].samples.append(line)
            }
        }
        return families.sorted { $0.name < $1.name }
            .map { ($0.comments + $0.samples.sorted()).joined(separator: "\n") + "\n" }.joined()
    }

    static func sanitize(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "_" ? $0 : "_" })
    }

    /// CPU seconds (user+system) of each `tb-worker-N` thread of this process, by N.
    public static func workerCPUSeconds() -> [Int: Double] {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard ticks > 0, let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return [:] }
        var out: [Int: Double] = [:]
        for tid in tasks {
            guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
            let comm = stat[stat.index(after: open)..<close]
            guard comm.hasPrefix("tb-worker-"), let n = Int(comm.dropFirst("tb-worker-".count)) else { continue }
            // Fields after "comm)": state is field 3; utime and stime are fields 14 and 15.
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            guard rest.count > 12, let u = Double(rest[11]), let s = Double(rest[12]) else { continue }
            out[n, default: 0] += (u + s) / ticks
        }
        return out
    }
}

/// Hands handler counters from the control thread (where `counters()` may be called) to the
/// scrape thread. While someone scrapes (a request in the last minute) the control loop
/// refreshes them on every wake-up (≤ 0.2 s), so a scrape answers at once with counters at most
/// that old; the first scrape after a quiet minute waits for one refresh.
public final class HandlerCounterExchange: @unchecked Sendable {
    private let cond = NSCondition()
    private var lastRequest = Date.distantPast
    private var latest: [HandlerCounters] = []
    private var latestAt = Date.distantPast
    static let activeWindow: Double = 60
    static let maxAge: Double = 0.5

    /// Scrape thread: the handlers' counters, at most `maxAge` old when the control loop keeps
    /// up, else the last ones it gave after waiting up to `timeout`.
    public init() {}

    public func fetch(timeout: Double = 2) -> [HandlerCounters] {
        cond.lock()
        defer { cond.unlock() }
        lastRequest = Date()
        let deadline = Date().addingTimeInterval(timeout)
        while Date().timeIntervalSince(latestAt) > Self.maxAge && cond.wait(until: deadline) {}
        return latest
    }

    /// Control thread: refreshes while scrapes are coming.
    public func serve(_ collect: () -> [HandlerCounters]) {
        cond.lock()
        let active = Date().timeIntervalSince(lastRequest) < Self.activeWindow
        cond.unlock()
        guard active else { return }
        let fresh = collect()
        cond.lock()
        latest = fresh
        latestAt = Date()
        cond.broadcast()
        cond.unlock()
    }
}
