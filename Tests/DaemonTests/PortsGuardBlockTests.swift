// PortsGuardBlockTests: `tapbridge ports` shows a port a learning switch's guard blocks (here a
// MAC limit with `max-macs-action = "block"`): `guardBlock` in the JSON, a BLOCKED-BY column in
// the table, only while the block holds. It used to show such a port as plain `up`.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct PortsGuardBlock {
    /// `guardBlock` of each port from `tapbridge ports --json`, by name (absent: not blocked).
    private func guardBlocks(_ d: DaemonProcess) throws -> [String: String] {
        let ports = try cliJSON(d, ["ports"])["ports"] as? [[String: Any]] ?? []
        var out: [String: String] = [:]
        for p in ports { if let n = p["name"] as? String, let g = p["guardBlock"] as? String { out[n] = g } }
        return out
    }

    @Test func aPortBlockedByTheMACLimitShowsWhy() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: """
                [[bridges]]
                name = "lan"
                [bridges.learning-switch]
                block-seconds = 3
                """ + "\n" + h.portTables(extra: [0: "max-macs = 1\nmax-macs-action = \"block\""]))
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")
            #expect(try guardBlocks(d).isEmpty)
            #expect(try !cli(d, ["ports"]).stdout.contains("BLOCKED-BY"))

            // Host 0 takes a second MAC: past max-macs = 1 with action block, its port is blocked.
            try run(["ip", "-n", h.namespaces[0], "link", "set", "eth0", "address", "02:00:00:00:00:ab"])
            try run(["ip", "-n", h.namespaces[0], "neigh", "flush", "all"])
            try run(["ip", "-n", h.namespaces[1], "neigh", "flush", "all"])
            _ = h.ping(0, h.addresses[1], count: 2)
            try d.waitFor("port blocked by the switch's guard", timeout: 30)
            let blocks = try guardBlocks(d)
            #expect(blocks == [h.macvtaps[0]: "MAC limit"], "\(blocks)\n\(d.log)")
            let table = try cli(d, ["ports"]).stdout
            #expect(table.contains("BLOCKED-BY") && table.contains("MAC limit"), "\(table)")
            let row = table.split(separator: "\n").first { $0.contains(h.macvtaps[1]) }.map(String.init) ?? ""
            #expect(!row.contains("MAC limit"), "\(table)")

            // The back-off lifts the block; the field goes with it (unless the excess MAC shows
            // again at once, which blocks the port again and logs it).
            try d.waitFor("port unblocked after the back-off", timeout: 30)
            let after = try guardBlocks(d)
            let blockedAgain = d.log.components(separatedBy: "port blocked by the switch's guard").count > 2
            #expect(after.isEmpty || blockedAgain, "\(after)\n\(d.log)")
            #expect(d.stop() == 0)
        }
    }
}
