// CustomDaemonTests: a user's handler in the daemon. docs/examples/custom-daemon is a package
// that registers the example EtherTypeCounter as `ethertype-counter` and then runs the stock
// commands; tools/test-example builds it (into .build-example) and runs this suite against it.
// Two namespace hosts behind passthru macvtaps: the handler blocks ARP, so IPv4 crosses only
// between hosts with static neighbour entries, and `tapbridge stats` shows both the drops it
// caused and its own per-EtherType counters.
import Foundation
import Testing
import TestSupport
@testable import Daemon

/// The custom daemon tools/test-example built and names in $TAPBRIDGE_CUSTOM_DAEMON (only then
/// does this suite run: a binary left from an older build must not stand in for the current one).
let customDaemon: String? = ProcessInfo.processInfo.environment["TAPBRIDGE_CUSTOM_DAEMON"]
    .flatMap { FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil }

@Suite(.enabled(if: customDaemon != nil, "runs from tools/test-example, which builds docs/examples/custom-daemon"))
struct CustomDaemon {
    @Test func registeredHandlerRunsWithItsKeysAndCounters() throws {
        let exe = try #require(customDaemon)
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            // Static neighbours: IPv4 needs no ARP between the two hosts.
            for (i, j) in [(0, 1), (1, 0)] {
                try run(["ip", "-n", h.namespaces[i], "neigh", "replace", h.addresses[j], "lladdr", h.macs[j], "dev", "eth0", "nud", "permanent"])
            }
            let config = """
                [[bridges]]
                pipeline = ["ethertype-counter", "learning-switch"]
                [bridges.ethertype-counter]
                watch = ["0x0800", "0x0806"]
                block = "0x0806"

                """ + h.portTables()
            let d = try DaemonProcess(t, config: config, executable: exe)
            #expect(d.log.contains("handlers=ethertype-counter,learning-switch"), "\(d.log)")
            #expect(h.ping(0, h.addresses[1], count: 3), "IPv4 did not cross:\n\(d.log)")
            // No static entry for this one: its ARP requests meet the handler and are dropped.
            #expect(!h.ping(0, "198.18.0.99", count: 1))

            let stats = try customJSON(exe, d, ["stats"])
            let ports = try #require(stats["ports"] as? [[String: Any]])
            let first = try #require(ports.first { $0["name"] as? String == h.macvtaps[0] })
            let blocked = (first["drops"] as? [String: Any])?["ethertype-blocked"] as? Int ?? 0
            #expect(blocked >= 1, "no ARP drop counted on \(h.macvtaps[0]): \(first)")
            let counters = try #require(stats["handlers"] as? [[String: Any]], "no handler counters: \(stats)")
            func count(_ type: String) -> Int {
                counters.first {
                    $0["handler"] as? String == "ethertype-counter" && $0["counter"] as? String == "frames_by_ethertype"
                        && ($0["labels"] as? [String: String])?["ethertype"] == type
                }?["value"] as? Int ?? -1
            }
            // 3 echo requests and 3 replies at least (plus ARP requests, counted before the drop).
            #expect(count("0x0800") >= 6 && count("0x0806") >= blocked, "\(counters)")
            #expect(counters.contains { $0["handler"] as? String == "learning-switch" }, "the stock handlers still report: \(counters)")

            // The plain-text form names the handler's counters too.
            let text = try run([exe, "stats", "--control", d.controlPath]).stdout
            #expect(text.contains("ethertype-counter") && text.contains("frames_by_ethertype{ethertype=0x0800}"), "\(text)")
            #expect(d.stop() == 0)
        }
    }

    @Test func itsKeysAreCheckedLikeAnyOther() throws {
        let exe = try #require(customDaemon)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tbt-custom-\(UInt32.random(in: 0...UInt32.max)).toml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try """
            [[bridges]]
            pipeline = ["ethertype-counter"]
            [bridges.ethertype-counter]
            block = "zz"
            colour = "red"
            [[bridges.ports]]
            name = "x"
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try run([exe, "config", "check", file], check: false)
        #expect(r.status != 0)
        #expect(r.stdout.contains("\(file): bridges[0].ethertype-counter.block: 'zz' is no EtherType"), "\(r.stdout)")
        #expect(r.stdout.contains("\(file): bridges[0].ethertype-counter.colour: unknown key"), "\(r.stdout)")
        // The stock build does not know the kind.
        let stock = try run([tapbridgeExecutable(), "config", "check", file], check: false)
        #expect(stock.status != 0 && stock.stdout.contains("unknown handler 'ethertype-counter'"), "\(stock.stdout)")
    }
}

/// `EXE ARGS --json --control SOCKET` parsed as a dictionary.
func customJSON(_ exe: String, _ d: DaemonProcess, _ args: [String]) throws -> [String: Any] {
    let r = try run([exe] + args + ["--json", "--control", d.controlPath], timeout: 60)
    return try #require(try json(r.stdout) as? [String: Any], "not a JSON object: \(r.stdout)")
}
