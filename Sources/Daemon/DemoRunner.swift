// DemoRunner: `tapbridge demo`. Builds the DemoTopology, runs a Daemon over it in-process,
// prints what to try and live counters, optionally checks connectivity itself (--self-test),
// and removes everything whatever happens.
import Foundation
import Logging

public struct DemoOptions {
    public var hosts = 2
    public var duration: Double?
    public var selfTest = false
    public var workers: Int?
    public var offloads = true
    /// Seconds between counter lines on stdout (0: none).
    public var interval: Double = 5
    /// Name prefix of namespaces and links ("tb": tb-a, tb-a-veth, tb-a-tap).
    public var prefix = "tb"
    public var logLevel: Logger.Level = .info
    /// Control socket of the demo's daemon ("" for none). Not the default daemon path, so a
    /// demo never collides with a real daemon on the same host.
    public var controlSocket = "/run/tapbridge/tb-demo.sock"
    public init() {}
}

public enum DemoRunner {
    /// Runs the demo; returns true unless the self-test failed.
    public static func run(_ options: DemoOptions) throws -> Bool {
        let logger = DaemonLogging.logger(level: options.logLevel)
        let stop = try StopSignal()   // installed first: Ctrl-C during set-up still cleans up
        let topo = DemoTopology(count: options.hosts, prefix: options.prefix)
        defer { topo.teardown(); say("demo: removed namespaces \(topo.hosts.map(\.namespace).joined(separator: ", ")) and their links") }
        try topo.build()
        var config = topo.config(workers: options.workers, offloads: options.offloads)
        config.controlSocket = options.controlSocket.isEmpty ? nil : options.controlSocket
        let daemon = Daemon(config: config, logger: logger, stopSignal: stop)
        var daemonOptions = Daemon.Options()
        daemonOptions.duration = options.duration
        let verdict = SelfTestResult()
        daemonOptions.onReady = { d in
            printInstructions(topo, options, handlers: d.pipelines["demo"] ?? [])
            if options.selfTest {
                Thread {
                    let ok = selfTest(topo)
                    verdict.set(ok)
                    say(ok ? "demo: self-test PASS" : "demo: self-test FAIL")
                    d.requestStop()
                }.start()
            }
        }
        if options.interval > 0 {
            daemonOptions.tickInterval = options.interval
            var first = true
            let start = Date()
            daemonOptions.onTick = { d in
                if first { first = false; return }   // nothing to show at t=0
                say("counters after \(Int(Date().timeIntervalSince(start).rounded())) s:")
                for line in d.counterSummary() { say("  " + line) }
            }
        }
        try daemon.run(daemonOptions)
        if options.selfTest { return verdict.get() ?? false }
        return true
    }

    static func printInstructions(_ topo: DemoTopology, _ options: DemoOptions, handlers: [String]) {
        let h = topo.hosts
        var s = """

            tapbridge demo: \(h.count) hosts in network namespaces, bridged by tapbridge (\(handlers.isEmpty ? "hub: every frame floods" : handlers.joined(separator: " -> ")))

            """
        for x in h { s += "  \(x.namespace): \(x.address)/24 on eth0 (\(x.mac)) <- veth -> \(x.veth) <- passthru macvtap \(x.macvtap)\n" }
        s += """

            Try, in another terminal:
              ip netns exec \(h[0].namespace) ping \(h[1].address)
              ip netns exec \(h[1].namespace) iperf3 -s -D; ip netns exec \(h[0].namespace) iperf3 -c \(h[1].address) -t 3
              ip netns exec \(h[1].namespace) tcpdump -ni eth0

            """
        if !options.controlSocket.isEmpty {
            let c = options.controlSocket == "/run/tapbridge/control.sock" ? "" : " --control \(options.controlSocket)"
            let lines = [("tapbridge top\(c)", "live frames/s and drops per port"),
                         ("tapbridge fdb\(c)", "the MACs the switch learned"),
                         ("tapbridge capture \(h[0].macvtap) -c 10 -w -\(c) | tcpdump -nr -", "")]
            let width = lines.filter { !$0.1.isEmpty }.map(\.0.count).max() ?? 0
            for (cmd, what) in lines {
                s += "  " + (what.isEmpty ? cmd : cmd.padding(toLength: width + 2, withPad: " ", startingAt: 0) + what) + "\n"
            }
            s += "\n"
        }
        if options.selfTest { s += "Running the self-test (ping between all hosts, 2 s iperf3)...\n" }
        else if let d = options.duration { s += "Stopping by itself in \(Int(d)) s (or Ctrl-C); everything is removed on exit.\n" }
        else { s += "Ctrl-C stops the bridge and removes everything.\n" }
        say(s)
    }

    /// Pings every host from every other one, then a 2 s iperf3 TCP run from the first host to the
    /// second; true if every ping answered and iperf3 delivered what it sent (up to what was still
    /// in flight when the timed run ended).
    static func selfTest(_ topo: DemoTopology) -> Bool {
        var ok = true
        let hosts = topo.hosts
        for a in hosts {
            for b in hosts where b.namespace != a.namespace {
                let r = (try? command(["ip", "netns", "exec", a.namespace, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", b.address], timeout: 15)) != nil
                say("demo: ping \(a.namespace) -> \(b.address): \(r ? "ok" : "FAILED")")
                ok = ok && r
            }
        }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["ip", "netns", "exec", hosts[1].namespace, "iperf3", "-s", "-1", "-B", hosts[1].address]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        do {
            try server.run()
            defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
            var out = ""
            for _ in 0..<20 {   // the server needs a moment to listen
                usleep(100_000)
                if let o = try? command(["ip", "netns", "exec", hosts[0].namespace, "iperf3", "-c", hosts[1].address,
                                         "-t", "2", "-J"], timeout: 20) { out = o; break }
            }
            let (sent, received) = iperfBytes(out)
            // A time-bounded run stops counting with data still in flight: allow for that.
            let r = sent > 0 && Double(received) >= Double(sent) * 0.98
            say("demo: iperf3 \(hosts[0].namespace) -> \(hosts[1].address): sent \(sent) bytes, received \(received) (\(String(format: "%.2f", Double(received) * 8 / 2e9)) Gbit/s): \(r ? "ok" : "FAILED")")
            ok = ok && r
        } catch {
            say("demo: cannot run iperf3: \(error)")
            ok = false
        }
        return ok
    }

    /// (sent, received) bytes from iperf3's -J output, (0, 0) if unreadable.
    static func iperfBytes(_ json: String) -> (Int, Int) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let end = obj["end"] as? [String: Any],
              let s = end["sum_sent"] as? [String: Any], let r = end["sum_received"] as? [String: Any] else { return (0, 0) }
        return ((s["bytes"] as? NSNumber)?.intValue ?? 0, (r["bytes"] as? NSNumber)?.intValue ?? 0)
    }
}

/// A line on stdout, flushed (the demo is watched live, often through a pipe).
func say(_ s: String) {
    FileHandle.standardOutput.write(Data((s + "\n").utf8))
}

private final class SelfTestResult: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Bool?
    func set(_ v: Bool) { lock.withLock { value = v } }
    func get() -> Bool? { lock.withLock { value } }
}
