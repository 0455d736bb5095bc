// `tapbridge link show` and the text/JSON renderings of a link shared by the link subcommands.
// JSON uses iproute2's `ip -d -j link` field names where they overlap, plus `tapdev`.
import ArgumentParser
import Foundation
import Netlink

struct LinkShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show macvtap/macvlan links (or one link by name).", aliases: ["list", "ls"])
    @Argument(help: "Only this link.") var name: String?
    @Flag(help: "JSON, with iproute2's field names (ifname, ifindex, address, mtu, operstate, link, linkinfo) plus tapdev.")
    var json = false
    @Flag(help: "Every link, not only macvtap/macvlan ones.") var all = false
    @OptionGroup var ns: NamespaceOption

    func run() throws {
        let m = try LinkManager(namespace: ns.namespace)
        var links: [LinkInfo]
        if let name {
            guard let l = try m.link(named: name) else {
                throw NetlinkError(.read, interface: name, errno: ENODEV, detail: ns.netns.map { "in namespace \($0)" })
            }
            links = [l]
        } else {
            links = try m.links().filter { all || $0.isMacvlanFamily }
        }
        if json {
            print(LinkTable.encode(links.map(LinkTable.json)))
        } else {
            print(LinkTable.header)
            for l in links { print(LinkTable.line(l)) }
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
        return pad([String(l.index), l.name, l.kind ?? "-", mode, l.parentName ?? l.parentIndex.map { "#\($0)" } ?? "-",
                    l.address?.description ?? "-", String(l.mtu), l.operState,
                    "\(l.txQueues ?? 1)/\(l.rxQueues ?? 1)", l.tapDevice?.description ?? "-"])
    }

    static func json(_ l: LinkInfo) -> [String: Any] {
        var o: [String: Any] = ["ifindex": Int(l.index), "ifname": l.name, "mtu": Int(l.mtu), "operstate": l.operState,
                                "flags": flagNames(l.flags)]
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
