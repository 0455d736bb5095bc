// `tapbridge fdb`: a running daemon's learning-switch tables; `fdb add|del` for static entries.
import ArgumentParser
import Control
import Foundation

struct FDBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fdb", abstract: "Show a running daemon's forwarding database; add or delete static entries; flush it; follow its events.",
        discussion: """
            Examples:
              tapbridge fdb                          # bridges with a learning switch
              tapbridge fdb br0 --json
              tapbridge fdb add 52:54:00:12:34:56 mvt1      # pin a MAC to a port
              tapbridge fdb add 52:54:00:12:34:56 mvt1 --vlan 10
              tapbridge fdb del 52:54:00:12:34:56    # a static or learned entry
              tapbridge fdb flush                    # every entry of every bridge
              tapbridge fdb flush br0 port mvt1 vlan 10 dynamic   # learned entries of one port in one VLAN
              tapbridge fdb monitor                  # learn, move, age, flush, block events until Ctrl-C
              tapbridge fdb monitor br0 --json
            """,
        subcommands: [FDBShow.self, FDBAdd.self, FDBDelete.self, FDBFlush.self, FDBMonitor.self], defaultSubcommand: FDBShow.self)
}

struct FDBShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "List FDB entries: MAC, VLAN, port, age, static.")
    @Argument(help: "Only this bridge.") var bridge: String?
    @Flag(help: "JSON: {\"entries\": [{bridge, mac, vlan, port, age, static}]}.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        let r = try control.call("fdb", bridge.map { ["bridge": .string($0)] } ?? [:], as: FDBResult.self)
        if json { printJSON(r); return }
        var t = TextTable(["BRIDGE", "MAC", "VLAN", "PORT", "AGE", "TYPE"], right: [2, 4])
        for e in r.entries {
            t.add([e.bridge, e.mac, "\(e.vlan)", e.port, e.static ? "-" : String(format: "%.1fs", e.age), e.static ? "static" : "learned"])
        }
        print(t.render())
    }
}

struct FDBAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Pin a MAC to a port (static entry).")
    @Argument(help: "Unicast MAC address, e.g. 52:54:00:12:34:56.") var mac: String
    @Argument(help: "Port name.") var port: String
    @Option(help: "VLAN (0: VLAN-unaware bridge).") var vlan: Int = 0
    @Option(help: "Bridge (default: the port's bridge).") var bridge: String?
    @OptionGroup var control: ControlOptions

    func run() throws {
        var args: [String: JSONValue] = ["mac": .string(mac), "port": .string(port), "vlan": .number(Double(vlan))]
        if let bridge { args["bridge"] = .string(bridge) }
        print(try control.call("fdb.add", args, as: DoneResult.self).done)
    }
}

struct FDBDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete an FDB entry (static or learned).", aliases: ["delete"])
    @Argument(help: "MAC address.") var mac: String
    @Option(help: "VLAN (0: VLAN-unaware bridge).") var vlan: Int = 0
    @Option(help: "Bridge (default: every bridge).") var bridge: String?
    @OptionGroup var control: ControlOptions

    func run() throws {
        var args: [String: JSONValue] = ["mac": .string(mac), "vlan": .number(Double(vlan))]
        if let bridge { args["bridge"] = .string(bridge) }
        print(try control.call("fdb.del", args, as: DoneResult.self).done)
    }
}
