// `tapbridge top`: live per-port rates computed on the client from two `stats` samples
// (frames/s, bits/s, drops/s), redrawn every interval; `--once` prints one sample for scripts.
import ArgumentParser
import Control
import Foundation

struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "Live per-port frames/s, bits/s and drops of a running daemon.",
        discussion: """
            Rates are computed from two counter samples `--interval` seconds apart (bits/s count frame bytes × 8). The view is redrawn every interval until Ctrl-C; `--once` waits one interval, prints one table and exits.

            Examples:
              tapbridge top
              tapbridge top --interval 5
              tapbridge top --once                # one sample over 1 s, for scripts
              tapbridge top --once --json         # the same as JSON (rates per port)
            """)
    @Flag(help: "Print one sample (computed over one interval) and exit.") var once = false
    @Option(help: "Seconds between samples (0.1...60).") var interval: Double = 1
    @Flag(help: "JSON (with --once): {\"intervalSeconds\": S, \"ports\": [{name, bridge, rxFramesPerSecond, ...}]}.") var json = false
    @OptionGroup var control: ControlOptions

    func validate() throws {
        guard (0.1...60).contains(interval) else { throw ValidationError("--interval must be 0.1...60 seconds") }
        if json && !once { throw ValidationError("--json needs --once") }
    }

    struct Rate: Codable {
        var bridge: String, name: String
        var rxFramesPerSecond: Double, rxBitsPerSecond: Double
        var txFramesPerSecond: Double, txBitsPerSecond: Double
        var dropsPerSecond: Double
        var dropsTotal: UInt64
    }
    struct Sample: Codable { var intervalSeconds: Double; var ports: [Rate] }

    func run() throws {
        let client = try control.connect()
        func stats() throws -> StatsResult {
            do { return try client.call("stats", as: StatsResult.self) } catch { fail(error) }
        }
        var previous = try stats()
        if !once {
            // Ctrl-C must work even if our parent blocked it.
            var unblock = sigset_t()
            sigemptyset(&unblock); sigaddset(&unblock, SIGINT); sigaddset(&unblock, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        }
        while true {
            usleep(useconds_t(interval * 1_000_000))
            let current = try stats()
            let sample = Self.rates(from: previous, to: current)
            previous = current
            if once {
                if json { printJSON(sample) } else { print(Self.render(sample)) }
                return
            }
            // Home, clear screen, then the table: a redraw without scrolling.
            print("\u{1B}[H\u{1B}[2J" + "tapbridge top — \(control.socketPath) — every \(interval) s (Ctrl-C to quit)\n")
            print(Self.render(sample))
            fflush(stdout)
        }
    }

    static func rates(from a: StatsResult, to b: StatsResult) -> Sample {
        let dt = max(1e-9, Double(b.monotonicNs &- a.monotonicNs) / 1e9)
        let ports = b.ports.map { p -> Rate in
            // A port re-attached in between restarts its counters: count from zero then.
            let o = a.ports.first { $0.name == p.name && $0.bridge == p.bridge && $0.rxFrames <= p.rxFrames && $0.txFrames <= p.txFrames }
            func d(_ x: UInt64, _ y: UInt64?) -> Double { Double(x &- min(x, y ?? 0)) / dt }
            return Rate(bridge: p.bridge, name: p.name,
                        rxFramesPerSecond: d(p.rxFrames, o?.rxFrames), rxBitsPerSecond: 8 * d(p.rxBytes, o?.rxBytes),
                        txFramesPerSecond: d(p.txFrames, o?.txFrames), txBitsPerSecond: 8 * d(p.txBytes, o?.txBytes),
                        dropsPerSecond: d(p.dropsTotal, o?.dropsTotal), dropsTotal: p.dropsTotal)
        }
        return Sample(intervalSeconds: (dt * 1000).rounded() / 1000, ports: ports)
    }

    static func render(_ s: Sample) -> String {
        var t = TextTable(["BRIDGE", "PORT", "RX FRAMES/S", "RX BITS/S", "TX FRAMES/S", "TX BITS/S", "DROPS/S", "DROPS"],
                          right: [2, 3, 4, 5, 6, 7])
        for r in s.ports {
            t.add([r.bridge, r.name, humanCount(r.rxFramesPerSecond), humanCount(r.rxBitsPerSecond),
                   humanCount(r.txFramesPerSecond), humanCount(r.txBitsPerSecond),
                   humanCount(r.dropsPerSecond), "\(r.dropsTotal)"])
        }
        return t.render()
    }
}
