// ControlCLITests: every control subcommand of the built `tapbridge` binary against a running
// daemon in namespaces, JSON output parsed and compared with the traffic the test sent.
import Foundation
import Testing
import TestSupport
@testable import Daemon
import Control

/// Runs `tapbridge ARGS --control <daemon's socket>`.
@discardableResult
func cli(_ d: DaemonProcess, _ args: [String], check: Bool = true) throws -> CommandResult {
    try run([tapbridgeExecutable()] + args + ["--control", d.controlPath], check: check, timeout: 60)
}

/// `tapbridge ARGS --json` parsed as a dictionary.
func cliJSON(_ d: DaemonProcess, _ args: [String]) throws -> [String: Any] {
    let r = try cli(d, args + ["--json"])
    return try #require(try json(r.stdout) as? [String: Any], "not a JSON object: \(r.stdout)")
}

@Suite struct ControlCLI {
    @Test func portsAndStatsMatchTraffic() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            #expect(d.log.contains("control socket"), "\(d.log)")
            // The socket is root-only.
            var st = stat()
            #expect(lstat(d.controlPath, &st) == 0 && st.st_mode & 0o777 == 0o600)

            let ports = try #require(try cliJSON(d, ["ports"])["ports"] as? [[String: Any]])
            #expect(ports.map { $0["name"] as? String } == h.macvtaps.map { $0 })
            for (i, p) in ports.enumerated() {
                #expect(p["bridge"] as? String == "br0")
                #expect(p["kind"] as? String == "macvtap")
                #expect(p["link"] as? String == h.veths[i])
                #expect(p["state"] as? String == "up")
                #expect(p["created"] as? Bool == true)
                #expect(p["mode"] as? String == "passthru")
                #expect(p["queues"] as? Int == 1)
            }
            let table = try cli(d, ["ports"]).stdout
            #expect(table.hasPrefix("BRIDGE") && table.contains(h.macvtaps[1]), "\(table)")

            let before = try #require(try cliJSON(d, ["stats", h.macvtaps[0]])["ports"] as? [[String: Any]]).first
            #expect(h.ping(0, h.addresses[1], count: 10))
            let all = try #require(try cliJSON(d, ["stats"])["ports"] as? [[String: Any]])
            let a = try #require(all.first { $0["name"] as? String == h.macvtaps[0] })
            let b = try #require(all.first { $0["name"] as? String == h.macvtaps[1] })
            let rx0 = (a["rxFrames"] as? Int ?? 0) - (before?["rxFrames"] as? Int ?? 0)
            // 10 echo requests (plus ARP) came in on port 0 and went out on port 1; replies the other way.
            #expect(rx0 >= 10 && rx0 <= 20, "\(a)")
            #expect((b["txFrames"] as? Int ?? 0) >= 10 && (b["rxFrames"] as? Int ?? 0) >= 10, "\(b)")
            #expect((a["rxBytes"] as? Int ?? 0) >= 10 * 98)
            let one = try cli(d, ["stats", h.macvtaps[1]]).stdout
            #expect(one.contains("rx frames") && one.contains(h.macvtaps[1]), "\(one)")
            let missing = try cli(d, ["stats", "nosuchport"], check: false)
            #expect(missing.status == 1 && missing.stderr.contains("no port 'nosuchport'"), "\(missing)")
            #expect(d.stop() == 0)
            // The socket file goes with the daemon.
            #expect(!FileManager.default.fileExists(atPath: d.controlPath))
        }
    }

    @Test func noDaemonSaysHowToStartOne() throws {
        let path = FileManager.default.temporaryDirectory.path + "/tbt-none-\(UInt32.random(in: 0...UInt32.max)).sock"
        let r = try run([tapbridgeExecutable(), "ports", "--control", path], check: false)
        #expect(r.status == 1)
        #expect(r.stderr.contains("no tapbridge daemon at \(path) (start one with `tapbridge run --config FILE`)"), "\(r.stderr)")
        let env = try run(["env", "TAPBRIDGE_CONTROL=\(path)", tapbridgeExecutable(), "stats"], check: false)
        #expect(env.status == 1 && env.stderr.contains("no tapbridge daemon at \(path)"), "\(env.stderr)")
    }
}
