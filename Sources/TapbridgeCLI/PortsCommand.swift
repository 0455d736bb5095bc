// `tapbridge ports` and `tapbridge stats`: what a running daemon forwards, and its counters.
import ArgumentParser
import Control
import Foundation

struct PortsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ports", abstract: "List a running daemon's ports: bridge, kind, link, MAC, state, queues.",
        discussion: """
            STATE is up (attached, forwarding), down (attached, but not connected or the link or its parent is down: see OPER; frames for it count as port-down drops), lost (the link vanished; re-attached when it comes back).
            CREATED says whether the daemon made the link (and deletes it at stop or `port del`).
            BLOCKED-BY (shown while a learning switch's guard blocks a port: loop guard or MAC limit) says why; its frames count as port-blocked drops until the back-off lifts the block.

            Examples:
              tapbridge ports
              tapbridge ports --json | jq '.ports[] | select(.state != "up")'
              tapbridge ports --control /tmp/tb.sock

            A vxlan port's tunnel follows the table: VNI, local address, UDP port, underlay, MTU, the configured remotes and the ones the kernel's VXLAN FDB floods to now.
            """)
    @Flag(help: "JSON: {\"ports\": [...]} as docs/control-api.md describes.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        let r = try control.call("ports", as: PortsResult.self)
        if json { printJSON(r); return }
        // The spanning tree's column only when some bridge runs one.
        let stp = r.ports.contains { $0.stpState != nil }
        // The guards' column only when a switch guard blocks some port now.
        let guarded = r.ports.contains { $0.guardBlock != nil }
        var t = TextTable(["BRIDGE", "PORT", "KIND", "LINK", "MAC", "MODE", "STATE", "OPER", "QUEUES", "OFFLOADS", "VLAN", "NETNS", "CREATED"]
                              + (stp ? ["STP"] : []) + (guarded ? ["BLOCKED-BY"] : []),
                          right: [8])
        for p in r.ports {
            t.add([p.bridge, p.name, p.kind, p.link ?? "-", p.mac ?? "-", p.mode ?? "-", p.state, p.operstate ?? "-",
                   String(p.queues), p.kind != "macvtap" && p.kind != "vxlan" ? "-" : p.offloads ? "on" : "off", p.vlan, p.netns ?? "-", p.created ? "yes" : "no"]
                  + (stp ? [p.stpState.map { "\($0) (\(p.stpRole ?? "-")" + (p.stpProtocol.map { ", \($0)" } ?? "")
                        + (p.stpEdge == true ? ", edge" : "") + ")" } ?? "-"] : [])
                  + (guarded ? [p.guardBlock ?? "-"] : []))
        }
        print(t.render())
        printVxlanTunnels(r.ports)
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Counters of a running daemon's ports and handlers: frames, bytes, drops by reason.",
        discussion: """
            Counters count since the port was attached. Drops are charged to the port a frame came in on (handler verdicts, malformed) or could not leave by (queue-full, port-down...). Without PORT, every handler's own counters follow the ports (learning switch, filter, and any handler a custom daemon registers).

            Examples:
              tapbridge stats                    # one line per port
              tapbridge stats mvt0               # one port, every counter and drop reason
              tapbridge stats --json | jq '.ports[] | {name, rxFrames, dropsTotal}'
              tapbridge top --once               # rates instead of totals
            """)
    @Argument(help: "Only this port.") var port: String?
    @Flag(help: "JSON: {\"monotonicNs\": N, \"ports\": [...], \"handlers\": [...]}.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        let r = try control.call("stats", port.map { ["port": .string($0)] } ?? [:], as: StatsResult.self)
        if json { printJSON(r); return }
        if let p = r.ports.first, port != nil {
            let rows: [(String, String)] = [
                ("port", p.name), ("bridge", p.bridge), ("connected", p.connected ? "yes" : "no"),
                ("rx frames", "\(p.rxFrames)"), ("rx bytes", "\(p.rxBytes)"), ("tx frames", "\(p.txFrames)"),
                ("tx bytes", "\(p.txBytes)"), ("tx errors", "\(p.txErrors)"),
                ("rx frames > 1514 B", "\(p.rxLargeFrames)"), ("tx frames > 1514 B", "\(p.txLargeFrames)"),
                ("drops", "\(p.dropsTotal)"),
            ] + p.drops.sorted { $0.key < $1.key }.map { ("  \($0.key)", "\($0.value)") }
              + (p.refusedConnections.map { [("refused connections", "\($0)")] } ?? [])
            let tunnel: [(String, String)] = p.tunnel.map { [("vxlan", $0)] } ?? []
            let all = rows + tunnel
            let w = all.map(\.0.count).max() ?? 0
            for (k, v) in all { print(k.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + v) }
            return
        }
        var t = TextTable(["BRIDGE", "PORT", "RX-FRAMES", "RX-BYTES", "TX-FRAMES", "TX-BYTES", "TX-ERR", "DROPS", "DROPS-BY-REASON"],
                          right: [2, 3, 4, 5, 6, 7])
        for p in r.ports {
            let reasons = p.drops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            t.add([p.bridge, p.name, "\(p.rxFrames)", "\(p.rxBytes)", "\(p.txFrames)", "\(p.txBytes)", "\(p.txErrors)",
                   "\(p.dropsTotal)", reasons.isEmpty ? "-" : reasons])
        }
        print(t.render())
        guard let handlers = r.handlers, !handlers.isEmpty else { return }
        var h = TextTable(["BRIDGE", "HANDLER", "COUNTER", "VALUE"], right: [3])
        for c in handlers {
            let labels = c.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            h.add([c.bridge, c.handler, labels.isEmpty ? c.counter : "\(c.counter){\(labels)}", "\(c.value)"])
        }
        print()
        print(h.render())
    }
}
