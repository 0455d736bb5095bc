// `tapbridge link`: macvtap/macvlan management with iproute2's words, so habits carry over.
// Keyword parsing lives here; the work is Netlink.LinkManager's.
import ArgumentParser
import Foundation
import Frames
import Netlink

struct LinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "link",
        abstract: "Create, change, show and delete macvtap/macvlan links (like `ip link`).",
        discussion: """
            Examples:
              tapbridge link add link eth0 name mvt0 type macvtap mode bridge address 52:54:00:12:34:56 up
              tapbridge link add link eth0 type macvtap mode passthru nopromisc
              tapbridge link add link veth0 name mv1 type macvlan mode bridge netns ns1
              tapbridge link set mvt0 mtu 9000 up
              tapbridge link set mvt0 type macvtap mode vepa
              tapbridge link set mvt0 txqueuelen 1000 promisc on alias "uplink to rack 4"
              tapbridge link set mvt0 name vm1tap
              tapbridge link add link eth0 name mvs0 type macvtap mode source nodst
              tapbridge link source mvs0 add 52:54:00:00:00:01 52:54:00:00:00:02
              tapbridge link show --json
              tapbridge link show type macvtap
              tapbridge link show -s mvt0      (counters as ip -s link; -s -s: errors)
              tapbridge -n ns1 -s -j link show (as ip -n ns1 -s -j link show)
              tapbridge link monitor
              tapbridge link del mvt0

            Modes: private (siblings never talk), vepa (siblings talk through an external
            hairpinning switch; the kernel default), bridge (siblings talk directly), passthru (one
            sub-interface owns the lower device), source (accept by source MAC allow list).
            A macvtap's /dev/tapN character device is shown as `tapdev MAJOR:MINOR`.
            Global options, before `link` (or right after it) as iproute2 users
            type them: -n NS or --netns NS (work inside that namespace), -s
            (statistics; twice for error details), -j (JSON), -d (accepted:
            tapbridge always shows details).
            """,
        subcommands: [LinkAdd.self, LinkDelete.self, LinkSet.self, LinkSource.self, LinkShow.self, LinkMonitorCommand.self])
}

/// `--netns NS` on every link subcommand: work inside that namespace (like `ip -n NS`).
struct NamespaceOption: ParsableArguments {
    @Option(name: .customLong("netns"), help: "Work inside this network namespace (a name under /run/netns, or a pid).")
    var netns: String?

    var namespace: NetworkNamespace? { netns.map(parseNamespace) }
}

func parseNamespace(_ s: String) -> NetworkNamespace {
    if let pid = Int32(s), pid > 0 { return .pid(pid) }
    return .named(s)
}

/// Reads iproute2-style `keyword value` words.
struct Words {
    var words: [String]
    let command: String

    mutating func next() -> String? { words.isEmpty ? nil : words.removeFirst() }

    mutating func value(for keyword: String) throws -> String {
        guard let v = next() else { throw ValidationError("'\(keyword)' needs a value (tapbridge link \(command) --help)") }
        return v
    }

    mutating func number(for keyword: String) throws -> UInt32 {
        let v = try value(for: keyword)
        guard let n = UInt32(v) else { throw ValidationError("'\(keyword)' needs a number, not '\(v)'") }
        return n
    }

    mutating func onOff(for keyword: String) throws -> Bool {
        let v = try value(for: keyword)
        guard v == "on" || v == "off" else { throw ValidationError("'\(keyword)' needs on or off, not '\(v)'") }
        return v == "on"
    }

    mutating func mode(for keyword: String) throws -> MacvlanMode {
        let v = try value(for: keyword)
        guard let m = MacvlanMode(rawValue: v) else {
            throw ValidationError("mode '\(v)': expected one of \(MacvlanMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return m
    }

    mutating func mac(for keyword: String) throws -> MACAddress {
        let v = try value(for: keyword)
        guard let m = MACAddress(v) else { throw ValidationError("invalid MAC '\(v)' (expected six hex octets like 52:54:00:12:34:56)") }
        return m
    }
}

struct LinkAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Create a macvtap or macvlan link.",
        discussion: """
            link DEV [name NAME] type macvtap|macvlan [mode private|vepa|bridge|passthru|source]
            [nopromisc] [nodst] [address MAC] [mtu N] [numtxqueues N] [numrxqueues N] [bcqueuelen N]
            [netns NS] [up]
            `netns NS` creates the link directly in that namespace; the lower device
            stays here. `nopromisc` is for mode passthru, `nodst` for mode source.
            """)

    @OptionGroup var ns: NamespaceOption
    @Argument(parsing: .captureForPassthrough, help: "iproute2-style words, see above.")
    var words: [String] = []

    func run() throws {
        var w = Words(words: words, command: "add")
        var operateIn = ns.namespace
        var parent: String?, name: String?, kind: LinkKind?, mode = MacvlanMode.vepa
        var spec = LinkSpec(parent: "")
        while let k = w.next() {
            switch k {
            case "link": parent = try w.value(for: k)
            case "name", "dev": name = try w.value(for: k)
            case "type":
                let v = try w.value(for: k)
                guard let t = LinkKind(rawValue: v) else { throw ValidationError("type '\(v)': tapbridge manages macvtap and macvlan") }
                kind = t
            case "mode":
                let v = try w.value(for: k)
                guard let m = MacvlanMode(rawValue: v) else {
                    throw ValidationError("mode '\(v)': expected one of \(MacvlanMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                mode = m
            case "nopromisc": spec.noPromisc = true
            case "nodst": spec.noDst = true
            case "address": spec.address = try w.mac(for: k)
            case "mtu": spec.mtu = try w.number(for: k)
            case "numtxqueues": spec.txQueues = try w.number(for: k)
            case "numrxqueues": spec.rxQueues = try w.number(for: k)
            case "bcqueuelen": spec.broadcastQueueLength = try w.number(for: k)
            case "netns": spec.namespace = parseNamespace(try w.value(for: k))
            case "--netns", "-n": operateIn = parseNamespace(try w.value(for: k))
            case "up": spec.up = true
            case "--help", "-h": throw CleanExit.helpRequest(Self.self)
            default: throw ValidationError("unknown word '\(k)' (tapbridge link add --help)")
            }
        }
        guard let parent else { throw ValidationError("'link DEV' (the lower device) is required") }
        guard let kind else { throw ValidationError("'type macvtap' or 'type macvlan' is required") }
        spec.parent = parent; spec.name = name; spec.kind = kind; spec.mode = mode
        let link = try LinkManager(namespace: operateIn).create(spec)
        print(LinkTable.line(link))
    }
}

struct LinkDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete a link.",
                                                    aliases: ["delete"])
    @Argument(help: "The link's name.") var name: String
    @Argument(parsing: .captureForPassthrough, help: "[netns NS]: the namespace the link is in.") var words: [String] = []
    @OptionGroup var ns: NamespaceOption

    func run() throws {
        var w = Words(words: words, command: "del")
        var namespace = ns.namespace
        while let k = w.next() {
            switch k {
            case "netns", "--netns", "-n": namespace = parseNamespace(try w.value(for: k))
            default: throw ValidationError("unknown word '\(k)' (tapbridge link del --help)")
            }
        }
        try LinkManager(namespace: namespace).delete(name: name)
    }
}

struct LinkSet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Change a link: state, promisc, address, mtu, txqueuelen, alias, name, mode, nodst, netns.",
        discussion: """
            NAME [up|down] [promisc on|off] [address MAC] [mtu N]
                 [txqueuelen N] [alias TEXT] [name NEWNAME]
                 [type macvtap|macvlan] [mode private|vepa|bridge|passthru|source]
                 [nodst [on|off]] [netns NS]
            All changes go to the kernel in one request, as `ip link set` does.
              tapbridge link set mvt0 mode vepa    (or: type macvtap mode vepa)
              tapbridge link set mvs0 mode source nodst    (nodst off clears it)
              tapbridge link set mvt0 txqueuelen 1000 promisc on alias "rack 4"
              tapbridge link set mvt0 name vm1tap     (a rename; works while up)
              tapbridge link set mvt0 alias ""        (removes the alias)
            Mode passthru can be neither set nor cleared on an existing link
            (delete it and add it again). Leaving mode source empties its
            source MAC list (the kernel does).
            """)
    @Argument(help: "The link's name (or `dev NAME`).") var name: String
    @Argument(parsing: .captureForPassthrough, help: "iproute2-style words, see above.") var words: [String] = []
    @OptionGroup var ns: NamespaceOption

    func run() throws {
        var w = Words(words: words, command: "set")
        var name = self.name
        if name == "dev" { name = try w.value(for: "dev") }
        var change = LinkChange()
        var operateIn = ns.namespace
        while let k = w.next() {
            switch k {
            case "up": change.up = true
            case "down": change.up = false
            case "promisc": change.promisc = try w.onOff(for: k)
            case "address": change.address = try w.mac(for: k)
            case "mtu": change.mtu = try w.number(for: k)
            case "txqueuelen", "txqlen", "qlen": change.txQueueLength = try w.number(for: k)
            case "alias": change.alias = try w.value(for: k)
            case "name": change.newName = try w.value(for: k)
            case "type":
                let v = try w.value(for: k)
                guard let t = LinkKind(rawValue: v) else { throw ValidationError("type '\(v)': tapbridge manages macvtap and macvlan") }
                change.kind = t
            case "mode": change.mode = try w.mode(for: k)
            case "nodst":
                // Bare `nodst` as iproute2 writes it; `nodst off` clears the flag.
                if let v = w.words.first, v == "on" || v == "off" { _ = w.next(); change.noDst = v == "on" } else { change.noDst = true }
            case "netns": change.namespace = parseNamespace(try w.value(for: k))
            case "--netns", "-n": operateIn = parseNamespace(try w.value(for: k))
            case "--help", "-h": throw CleanExit.helpRequest(Self.self)
            default: throw ValidationError("unknown word '\(k)' (tapbridge link set --help)")
            }
        }
        guard !change.isEmpty else {
            throw ValidationError("nothing to change: give up, down, promisc on|off, address MAC, mtu N, txqueuelen N, "
                                  + "alias TEXT, name NEWNAME, mode MODE, nodst or netns NS")
        }
        try LinkManager(namespace: operateIn).change(name: name, change)
    }
}

struct LinkSource: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source", abstract: "Edit a source-mode link's allowed source MACs: add|del|set|flush [MAC...].")
    @Argument(help: "The link's name.") var name: String
    @Argument(help: "add, del, set or flush.") var operation: String
    @Argument(help: "MAC addresses.") var macs: [String] = []
    @OptionGroup var ns: NamespaceOption

    func run() throws {
        let list = try macs.map { s -> MACAddress in
            guard let m = MACAddress(s) else { throw ValidationError("invalid MAC '\(s)' (expected six hex octets like 52:54:00:12:34:56)") }
            return m
        }
        let op: SourceMACOperation
        switch operation {
        case "add": op = .add(list)
        case "del", "delete": op = .delete(list)
        case "set": op = .set(list)
        case "flush": op = .flush
        default: throw ValidationError("'\(operation)': expected add, del, set or flush")
        }
        if list.isEmpty, operation == "add" || operation == "del" { throw ValidationError("'\(operation)' needs at least one MAC") }
        try LinkManager(namespace: ns.namespace).sourceMACs(name: name, op)
    }
}

struct LinkMonitorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor", abstract: "Print one line per link event (added, removed, up, down, changed) until interrupted.")
    @Flag(help: "One JSON object per line.") var json = false
    @OptionGroup var ns: NamespaceOption

    func run() throws {
        let monitor = try LinkMonitor(namespace: ns.namespace)
        setvbuf(stdout, nil, _IOLBF, 0)
        // A parent may have spawned us with SIGINT/SIGTERM blocked: Ctrl-C and kill must work.
        var unblock = sigset_t()
        sigemptyset(&unblock); sigaddset(&unblock, SIGINT); sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        while true {
            guard let e = try monitor.next() else { continue }
            if json {
                var o: [String: Any] = ["event": e.name]
                if let l = e.link { o["ifname"] = l.name; o["ifindex"] = Int(l.index); o["link"] = LinkTable.json(l) }
                print(LinkTable.encode(o))
            } else {
                print("\(e.name) \(e.link.map(LinkTable.line) ?? "")")
            }
        }
    }
}
