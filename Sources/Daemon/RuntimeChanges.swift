// RuntimeChanges: what was changed over the control socket and is not in the configuration
// file — ports added or removed, filter rules replaced, static FDB entries pinned. None of it is
// written back. A SIGHUP reload makes the running daemon match the file again, so before it
// applies anything it names, one log line each, every runtime change it drops; the control
// replies say at the time that the change is runtime only. (Static FDB entries survive a
// reload — the switch is not rebuilt — unless their port goes; none survives a restart.)
// Control thread only.

struct RuntimeChanges {
    /// Ports added over the control socket, by "netns/name", with their bridge.
    private(set) var portsAdded: [String: String] = [:]
    /// Ports of the file removed over the control socket, by "netns/name", with their bridge.
    private(set) var portsRemoved: [String: String] = [:]
    /// Bridges whose filter rules were replaced over the control socket.
    private(set) var filtersReplaced: Set<String> = []
    /// Static FDB entries pinned over the control socket: bridge, MAC, VLAN, port.
    private(set) var staticEntries: [(bridge: String, mac: String, vlan: UInt16, port: String)] = []

    static func key(_ name: String, _ netns: String?) -> String { "\(netns ?? "")/\(name)" }

    /// What a control reply adds to say the change is not saved.
    static let note = "runtime only: not written to the configuration file; a reload (SIGHUP) that does not find it there drops it (logged), a restart forgets it"

    mutating func portAdded(_ name: String, netns: String?, bridge: String) {
        let k = Self.key(name, netns)
        if portsRemoved.removeValue(forKey: k) == nil { portsAdded[k] = bridge }
    }

    mutating func portRemoved(_ name: String, netns: String?, bridge: String) {
        let k = Self.key(name, netns)
        if portsAdded.removeValue(forKey: k) == nil { portsRemoved[k] = bridge }
        staticEntries.removeAll { $0.bridge == bridge && $0.port == name }
    }

    mutating func filterReplaced(bridge: String) { filtersReplaced.insert(bridge) }

    mutating func staticEntryAdded(bridge: String, mac: String, vlan: UInt16, port: String) {
        staticEntries.removeAll { $0.bridge == bridge && $0.mac == mac && $0.vlan == vlan }
        staticEntries.append((bridge, mac, vlan, port))
    }

    mutating func staticEntryRemoved(bridge: String, mac: String, vlan: UInt16) {
        staticEntries.removeAll { $0.bridge == bridge && $0.mac == mac && $0.vlan == vlan }
    }

    /// The runtime changes a reload to `next` drops, one sentence each, and forgets them (what
    /// the file now also declares is kept and forgotten too: it is no longer runtime only).
    /// `running` is the configuration in force before the reload.
    mutating func dropped(by next: DaemonConfig, running: DaemonConfig) -> [String] {
        var out: [String] = []
        let inFile = Set(next.allPorts.map { Self.key($0.port.name, $0.port.netns) })
        var portsGoing: Set<String> = []
        for (k, bridge) in portsAdded.sorted(by: { $0.key < $1.key }) where !inFile.contains(k) {
            out.append("port \(Self.describe(k)) added to bridge \(bridge) over the control socket is removed (the file does not declare it)")
            portsGoing.insert(k)
        }
        for (k, bridge) in portsRemoved.sorted(by: { $0.key < $1.key }) where inFile.contains(k) {
            out.append("port \(Self.describe(k)) removed from bridge \(bridge) over the control socket is added again (the file declares it)")
        }
        for b in filtersReplaced.sorted() {
            guard let nf = next.bridges.first(where: { $0.name == b })?.filter,
                  let rf = running.bridges.first(where: { $0.name == b })?.filter else { continue }
            if nf.rules != rf.rules || nf.defaultAction != rf.defaultAction {
                out.append("filter rules of bridge \(b) replaced over the control socket (\(rf.rules.count) rule(s), default \(rf.defaultAction)) "
                           + "give way to the file's (\(nf.rules.count) rule(s), default \(nf.defaultAction))")
            }
        }
        for e in staticEntries {
            let k = running.allPorts.first { $0.bridge.name == e.bridge && $0.port.name == e.port }.map { Self.key($0.port.name, $0.port.netns) }
            if let k, portsGoing.contains(k) || !inFile.contains(k) {
                out.append("static FDB entry \(e.mac) vlan \(e.vlan) on bridge \(e.bridge) pinned over the control socket goes with its port \(e.port)")
            }
        }
        portsAdded = [:]
        portsRemoved = [:]
        filtersReplaced = []
        staticEntries.removeAll { e in out.contains { $0.hasPrefix("static FDB entry \(e.mac) vlan \(e.vlan) on bridge \(e.bridge) ") } }
        return out
    }

    private static func describe(_ key: String) -> String {
        let parts = key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        return parts[0].isEmpty ? "'\(parts[1])'" : "'\(parts[1])' (namespace \(parts[0]))"
    }
}
