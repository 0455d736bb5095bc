// `tapbridge link show` and the text/JSON renderings of a link shared by the link subcommands.
// JSON uses iproute2's `ip -d -j link` field names where they overlap, plus `tapdev`.
import ArgumentParser
import Foundation
import Netlink

struct LinkShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show macvtap/macvlan links (or one link by name).",
        discussion: """
            [NAME | dev NAME] [type KIND] [up] [-s [-s]] [--json] [--all]
            [--netns NS]
              tapbridge link show type macvtap   (one kind, any: veth, bridge...)
              tapbridge link show -s mvt0        (counters, as ip -s link)
              tapbridge link show -s -s --json   (with errors, as ip -s -s -j link)
            """,
        aliases: ["list", "ls"])
    @Flag(help: "JSON, with iproute2's field names (ifname, ifindex, address, mtu, txqlen, ifalias, operstate, link, linkinfo, stats64) plus tapdev.")
    var json = false
    @Flag(help: "Every link, not only macvtap/macvlan ones.") var all = false
    @Flag(name: [.customShort("s"), .customLong("stats")], help: "Statistics (IFLA_STATS64), like ip -s; twice (-s -s) adds error details.")
    var stats: Int
    @OptionGroup var ns: NamespaceOption
    @Argument(parsing: .captureForPassthrough, help: "[NAME | dev NAME] [type KIND] [up]") var words: [String] = []

    func run() throws {
        var w = Words(words: words, command: "show")
        var name: String?, kind: String?, onlyUp = false
        var json = self.json, all = self.all, statsLevel = stats, namespace = ns.namespace
        while let k = w.next() {
            switch k {
            case "dev": name = try w.value(for: k)
            case "type": kind = try w.value(for: k)
            case "up": onlyUp = true
            case "--json", "-j": json = true
            case "--all": all = true
            case "-s", "--stats": statsLevel += 1
            case "-d", "--details": break   // always detailed
            case "--netns", "-n": namespace = parseNamespace(try w.value(for: k))
            case "--help", "-h": throw CleanExit.helpRequest(Self.self)
            default:
                guard name == nil, !k.hasPrefix("-") else { throw ValidationError("unknown word '\(k)' (tapbridge link show --help)") }
                name = k
            }
        }
        let m = try LinkManager(namespace: namespace)
        var links: [LinkInfo]
        if let name {
            guard let l = try m.link(named: name) else {
                throw NetlinkError(.read, interface: name, errno: ENODEV, detail: namespace.map { "in namespace \($0)" })
            }
            links = [l]
        } else {
            links = try m.links().filter { all || kind != nil || $0.isMacvlanFamily }
        }
        if let kind { links = links.filter { $0.kind == kind } }
        if onlyUp { links = links.filter(\.isUp) }
        if json {
            print(LinkTable.encode(links.map { LinkTable.json($0, statistics: statsLevel) }))
        } else {
            print(LinkTable.header)
            for l in links {
                print(LinkTable.line(l))
                if let a = l.alias { print("    alias \(a)") }
                if statsLevel > 0 { print(LinkStatisticsText.lines(l, level: statsLevel), terminator: "") }
            }
        }
    }
}

enum LinkTable {
    static let header = pad(["IFINDEX", "NAME", "KIND", "MODE", "PARENT", "ADDRESS", "MTU", "STATE", "QUEUES", "TAPDEV"])

    static func pad(_ cols: [String]) -> String {
        let widths = [7, 15, 8, 9, 15, 17, 5, 14, 6, 8]
        return zip(cols, widths).map { $0.0.padding(toLength: max($0.1, $0.0.count), withPad: " ", startingAt: 0) }
            .joined(separator: " ")
    }

    static func line(_ l: LinkInfo) -> String {
        var mode = l.mode?.rawValue ?? "-"
        if l.noPromisc { mode += "/nopromisc" }
        if l.noDst { mode += "/nodst" }
        return pad([String(l.index), l.name, l.kind ?? "-", mode, l.parentName ?? l.parentIndex.map { "#\($0)" } ?? "-",
                    l.address?.description ?? "-", String(l.mtu), l.operState,
                    "\(l.txQueues ?? 1)/\(l.rxQueues ?? 1)", l.tapDevice?.description ?? "-"])
    }

    /// `statistics`: 0 none, 1 `stats64` as `ip -s -j` has it, 2 with the error details of `ip -s -s -j`.
    static func json(_ l: LinkInfo, statistics: Int = 0) -> [String: Any] {
        var o: [String: Any] = ["ifindex": Int(l.index), "ifname": l.name, "mtu": Int(l.mtu), "operstate": l.operState,
                                "flags": flagNames(l.flags)]
        if let q = l.txQueueLength { o["txqlen"] = Int(q) }
        if let a = l.alias { o["ifalias"] = a }
        if statistics > 0, let s = l.statistics { o["stats64"] = LinkStatisticsText.json(s, level: statistics, carrierChanges: l.carrierChanges) }
        if let a = l.address { o["address"] = a.description }
        if let p = l.parentName { o["link"] = p } else if let i = l.parentIndex { o["link_index"] = Int(i) }
        if let q = l.txQueues { o["num_tx_queues"] = Int(q) }
        if let q = l.rxQueues { o["num_rx_queues"] = Int(q) }
        if let p = l.promiscuity { o["promiscuity"] = Int(p) }
        if let kind = l.kind {
            var info: [String: Any] = ["info_kind": kind]
            if l.isMacvlanFamily {
                var data: [String: Any] = [:]
                if let m = l.mode { data["mode"] = m.rawValue }
                if l.noPromisc { data["nopromisc"] = true }
                if l.noDst { data["nodst"] = true }
                if let b = l.broadcastQueueLength { data["bcqueuelen"] = Int(b) }
                if l.mode == .source {
                    data["macaddr_count"] = l.sourceMACs.count
                    data["macaddr_data"] = l.sourceMACs.map(\.description)
                }
                info["info_data"] = data
            }
            o["linkinfo"] = info
        }
        if let t = l.tapDevice { o["tapdev"] = t.description }
        return o
    }

    static func flagNames(_ f: UInt32) -> [String] {
        let names: [(UInt32, String)] = [(0x2, "BROADCAST"), (0x8, "LOOPBACK"), (0x100, "PROMISC"), (0x1000, "MULTICAST"),
                                         (0x1, "UP"), (0x10000, "LOWER_UP")]
        return names.filter { f & $0.0 != 0 }.map(\.1)
    }

    static func encode(_ o: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
