// `tapbridge port add|del`: attach or detach a port of a running daemon, creating or deleting
// its macvtap as a `[[bridges.ports]]` table with the same keys would (docs/config.md).
import ArgumentParser
import Control
import Foundation

struct PortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "port", abstract: "Attach or detach a port of a running daemon.",
        discussion: """
            `port add NAME [KEY VALUE]...` takes the keys of a [[bridges.ports]] table (docs/config.md): with `parent` the daemon creates the macvtap (and deletes it at `port del` or stop); without, NAME must be an existing macvtap. `kind tap` makes a tap for a VMM (`user`, `group`, `queues`, `mac`, `addresses` a,b), `kind host` a host interface (`addresses` 198.18.0.254/24,...), `kind vxlan` a tunnel to other hosts (`vni`, `local`, `underlay`, `remotes` a,b or external; docs/multi-host.md).

            Examples:
              # create macvtap mvt3 on eth0 and attach it
              tapbridge port add mvt3 parent eth0 mode bridge
              tapbridge port add mvt3 parent eth0 mode passthru queues 2 --bridge br0
              # attach an existing macvtap that lives in namespace vm1
              tapbridge port add mvt4 netns vm1
              tapbridge port add mvt5 parent eth1 vlan access pvid 10 offloads false
              # a QEMU VM socket port (tapbridge listens; QEMU -netdev stream,server=off,addr.path=...)
              tapbridge port add vm0 kind vm path /run/tapbridge/vm0.sock mac 52:54:00:12:34:56
              # detach it (and delete the link if the daemon created it)
              tapbridge port del mvt3
            """,
        subcommands: [PortAdd.self, PortDelete.self])
}

struct PortAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Attach a port (and create its macvtap when `parent` is given).")
    @Argument(help: "The macvtap's name.") var name: String
    @Argument(parsing: .allUnrecognized,
              help: "KEY VALUE pairs: parent DEV, mode MODE, mac MAC, mtu N, netns NS, queues N, offloads true|false, vlan unaware|access|trunk, pvid N, allowed 10,20,100-199, native N, isolated true|false, hairpin true|false, max-macs N, max-macs-action drop|block, flood|mcast-flood|bcast-flood true|false, stp|stp-edge|stp-auto-edge|stp-point-to-point true|false, storm-broadcast|storm-multicast N (frames/s), nopromisc true|false, source-macs MAC,MAC; a VM port: kind vm, socket stream-server|stream-client|dgram, path P, remote-path P, owner U, group G, socket-mode 0660, max-frame N, anti-spoofing true|false, addresses IP,IP; a tap port: kind tap, user U, group G, queues N, macvtap NAME, mac MAC, addresses IP,IP; a host port: kind host, addresses IP/PREFIX,..., mtu N, mac MAC; a vxlan port: kind vxlan, vni N, local IP, underlay DEV, remotes IP,IP|external, group IP, dstport N, learning true|false, mtu N, macvtap NAME")
    var words: [String] = []
    @Option(help: "Bridge (default: the daemon's only bridge).") var bridge: String?
    @OptionGroup var control: ControlOptions

    static let intKeys: Set<String> = ["mtu", "queues", "pvid", "native", "max-frame", "vni", "dstport", "max-macs", "storm-broadcast", "storm-multicast"]
    static let boolKeys: Set<String> = ["offloads", "isolated", "hairpin", "nopromisc", "anti-spoofing", "learning", "flood", "mcast-flood", "bcast-flood",
                                        "stp", "stp-edge", "stp-auto-edge", "stp-point-to-point"]
    /// Every key of a port table that takes a string (the VM keys too: the control API has
    /// always accepted VM ports; `kind` was missing here).
    static let stringKeys: Set<String> = ["parent", "mode", "mac", "netns", "vlan", "kind", "socket", "path", "remote-path",
                                          "owner", "group", "socket-mode", "user", "macvtap", "tap-macvtap",
                                          "local", "underlay", "max-macs-action"]

    /// The words as a port table with TOML-typed values.
    static func table(name: String, words: [String]) throws -> [String: JSONValue] {
        var t: [String: JSONValue] = ["name": .string(name)]
        var i = 0
        while i < words.count {
            let key = words[i]
            guard i + 1 < words.count else { throw ValidationError("'\(key)' needs a value (tapbridge port add --help)") }
            let value = words[i + 1]
            i += 2
            if intKeys.contains(key) {
                guard let n = Int(value) else { throw ValidationError("\(key): '\(value)' is not an integer") }
                t[key] = .number(Double(n))
            } else if boolKeys.contains(key) {
                switch value { case "true", "on", "yes": t[key] = .bool(true)
                case "false", "off", "no": t[key] = .bool(false)
                default: throw ValidationError("\(key): '\(value)' is not true or false") }
            } else if stringKeys.contains(key) {
                t[key] = .string(value)
            } else if key == "addresses" {
                t[key] = .array(value.split(separator: ",").map { .string(String($0)) })
            } else if key == "remotes" {   // a vxlan port: a list, or "external"
                t[key] = value == "external" ? .string(value) : .array(value.split(separator: ",").map { .string(String($0)) })
            } else if key == "source-macs" {
                t[key] = .array(value.split(separator: ",").map { .string(String($0)) })
            } else if key == "allowed" {
                t[key] = .array(value.split(separator: ",").map { s in Int(s).map { .number(Double($0)) } ?? .string(String(s)) })
            } else {
                throw ValidationError("unknown key '\(key)' (tapbridge port add --help)")
            }
        }
        return t
    }

    func run() throws {
        var args: [String: JSONValue] = ["port": .object(try Self.table(name: name, words: words))]
        if let bridge { args["bridge"] = .string(bridge) }
        print(try control.call("port.add", args, as: DoneResult.self).done)
    }
}

struct PortDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "del", abstract: "Detach a port (and delete its macvtap if the daemon created it).", aliases: ["delete"])
    @Argument(help: "The port's name.") var name: String
    @Option(help: "The namespace of the port's link, when two ports share a name.") var netns: String?
    @OptionGroup var control: ControlOptions

    func run() throws {
        var args: [String: JSONValue] = ["name": .string(name)]
        if let netns { args["netns"] = .string(netns) }
        print(try control.call("port.del", args, as: DoneResult.self).done)
    }
}
