// `tapbridge mdb`: a running daemon's multicast database (groups learned by IGMP/MLD snooping,
// their ports and timers, and the router ports), like `bridge mdb show`.
import ArgumentParser
import Control
import Foundation

struct MDBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mdb", abstract: "Show a running daemon's multicast groups (IGMP/MLD snooping) and router ports.",
        discussion: """
            Examples:
              tapbridge mdb                          # every snooping bridge
              tapbridge mdb br0 --json
            """)
    @Argument(help: "Only this bridge.") var bridge: String?
    @Flag(help: "JSON: {\"entries\": [{bridge, group, vlan, port, expires}], \"routers\": [{bridge, port, family, expires}]}.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        let r = try control.call("mdb", bridge.map { ["bridge": .string($0)] } ?? [:], as: MDBResult.self)
        if json { printJSON(r); return }
        var t = TextTable(["BRIDGE", "GROUP", "VLAN", "PORT", "EXPIRES"], right: [2, 4])
        for e in r.entries { t.add([e.bridge, e.group, "\(e.vlan)", e.port, String(format: "%.1fs", e.expires)]) }
        print(t.render())
        if !r.routers.isEmpty {
            var rt = TextTable(["BRIDGE", "ROUTER PORT", "FAMILY", "EXPIRES"], right: [3])
            for x in r.routers { rt.add([x.bridge, x.port, x.family, String(format: "%.1fs", x.expires)]) }
            print("")
            print(rt.render())
        }
    }
}
