// `tapbridge stp`: a running daemon's spanning trees (bridge and root identifiers, each port's
// state and role), like `bridge -d link` and `ip -d link show BR` for the Linux bridge's STP.
import ArgumentParser
import Control
import Foundation

struct SpanningTreeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stp", abstract: "Show a running daemon's spanning trees: root, ports' states and roles.",
        discussion: """
            Examples:
              tapbridge stp              # every bridge with stp = "rstp" or "stp"
              tapbridge stp lan --json
            """)
    @Argument(help: "Only this bridge.") var bridge: String?
    @Flag(help: "JSON: {\"bridges\": [{bridge, bridgeId, rootId, isRoot, rootPathCost, rootPort, ..., ports: [...]}]}.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        let r = try control.call("stp", bridge.map { ["bridge": .string($0)] } ?? [:], as: SpanningTreeResult.self)
        if json { printJSON(r); return }
        if r.bridges.isEmpty { print("no bridge runs a spanning tree (stp = \"rstp\" or \"stp\" in its [[bridges]] table)"); return }
        for (i, b) in r.bridges.enumerated() {
            if i > 0 { print("") }
            print("bridge \(b.bridge): \(b.mode) id \(b.bridgeId)" + (b.isRoot ? " (root)" : ""))
            print("  root \(b.rootId) cost \(b.rootPathCost) via \(b.rootPort ?? "-")")
            print("  hello \(b.helloTime) s, forward delay \(b.forwardDelay) s, max age \(b.maxAge) s; "
                  + "topology changes \(b.topologyChanges)" + (b.topologyChange ? " (one in progress)" : ""))
            let rapid = b.mode == "rstp"
            var t = TextTable(["PORT", "STATE", "ROLE", "DESIGNATED BRIDGE", "DESIGNATED PORT"] + (rapid ? ["PROTOCOL", "EDGE"] : []))
            for p in b.ports {
                t.add([p.name, p.state, p.role, p.designatedBridge, p.designatedPort]
                      + (rapid ? [p.protocol ?? "-", p.edge == true ? "yes" : "no"] : []))
            }
            print(t.render().split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))
        }
    }
}
