// VxlanLinks: the links behind a `vxlan` port, made the same way for the file, reloads and
// `port add`: the kernel VXLAN device (VNI, local address, UDP port, underlay device, MTU the
// underlay's minus the encapsulation unless given) with addrgenmode none, up; the passthru
// macvtap on it that tapbridge reads (same MTU, addrgenmode none, up); and, for a static remote
// list, one head-end replication entry per remote in the device's FDB. LinkLifecycle records
// both links in the ledger and deletes the device at stop (its macvtap goes with it). A reload
// that changes only the remote list edits the FDB in place (`syncRemotes`): the port keeps
// running. The kernel's VXLAN FDB is read back for `tapbridge ports`.
import Config
import Control
import Datapath
import Foundation
import Netlink
import Tap

enum VxlanLinks {
    /// The Netlink description of port `p`'s VXLAN device.
    static func spec(name: String, _ v: VxlanPortConfig) throws -> VxlanSpec {
        guard let local = InterfaceAddress(v.local) else { throw DaemonError("vxlan '\(name)': invalid local address '\(v.local)'") }
        var s = VxlanSpec(name: name, vni: v.vni, local: local, underlay: v.underlay)
        s.port = v.dstport
        s.learning = v.learning
        s.mtu = v.mtu.map { UInt32($0) }
        if case .group(let g) = v.remotes {
            guard let group = InterfaceAddress(g) else { throw DaemonError("vxlan '\(name)': invalid group '\(g)'") }
            s.group = group
        }
        return s
    }

    /// Creates VXLAN device `name`, its remotes' flood entries and the passthru macvtap on it;
    /// on any failure deletes what it made. Returns both links as the kernel reports them.
    static func create(name: String, _ v: VxlanPortConfig) throws -> (vxlan: LinkInfo, macvtap: LinkInfo) {
        let spec = try spec(name: name, v)
        let manager = try LinkManager()
        do { try manager.createVxlan(spec) } catch { throw DaemonError("\(error)") }
        do {
            try manager.disableIPv6AddressGeneration(name: name)
            try syncRemotes(name: name, v.remotes, manager: manager)
            try manager.set(name: name, up: true)
            guard let vx = try manager.link(named: name) else { throw DaemonError("vxlan '\(name)' vanished while being made") }
            try TapLinks.addMacvtap(tap: name, macvtap: v.macvtap, mtu: Int(vx.mtu))
            guard let m = try manager.link(named: v.macvtap) else {
                throw DaemonError("vxlan '\(name)': its macvtap '\(v.macvtap)' vanished while being made")
            }
            return (vx, m)
        } catch {
            // Deleting the device deletes the macvtap on it too.
            _ = try? manager.delete(name: name)
            throw error as? DaemonError ?? DaemonError("vxlan '\(name)': \(error)")
        }
    }

    /// Makes VXLAN device `name`'s flood entries exactly `remotes` (a static list; a group or
    /// external control plane: nothing is touched). Returns (added, removed) addresses.
    @discardableResult
    static func syncRemotes(name: String, _ remotes: VxlanRemotes, manager: LinkManager? = nil) throws -> (added: [String], removed: [String]) {
        guard case .list(let wanted) = remotes else { return ([], []) }
        let manager = try manager ?? LinkManager()
        var want: [InterfaceAddress] = []
        for w in wanted {
            guard let a = InterfaceAddress(w) else { throw DaemonError("vxlan '\(name)': invalid remote '\(w)'") }
            want.append(a)
        }
        let have: [InterfaceAddress]
        do { have = try manager.floodRemotes(name: name) } catch { throw DaemonError("\(error)") }
        let haveBytes = Set(have.map(\.bytes)), wantBytes = Set(want.map(\.bytes))
        var added: [String] = [], removed: [String] = []
        do {
            for a in want where !haveBytes.contains(a.bytes) {
                try manager.appendFloodRemote(a, to: name)
                added.append(a.host)
            }
            for a in have where !wantBytes.contains(a.bytes) {
                try manager.removeFloodRemote(a, from: name)
                removed.append(a.host)
            }
        } catch { throw DaemonError("\(error)") }
        return (added, removed)
    }

    /// The port for a VXLAN device: the passthru macvtap on it, read by its device number.
    static func open(name: String, _ v: VxlanPortConfig, settings: PortSettings) throws -> VxlanPort {
        let manager = try LinkManager()
        guard let vx = try manager.link(named: name) else { throw DaemonError("no vxlan '\(name)'") }
        guard vx.kind == "vxlan" else { throw DaemonError("'\(name)' is not a vxlan device (kind \(vx.kind ?? "none"))") }
        guard let link = try manager.link(named: v.macvtap), link.kind == "macvtap", let dev = link.tapDevice else {
            throw DaemonError("vxlan '\(name)': no macvtap '\(v.macvtap)' on it")
        }
        guard link.parentIndex == vx.index, link.mode == .passthru else {
            throw DaemonError("vxlan '\(name)': '\(v.macvtap)' is not a passthru macvtap on it")
        }
        let device = MacvtapDevice(name: v.macvtap, ifindex: link.index, major: dev.major, minor: dev.minor)
        let port = VxlanPort(vxlan: name, macvtap: device, settings: settings)
        if !v.offloads { try port.setReceiveOffloads([]) }
        return port
    }

    /// What `tapbridge ports` shows of a vxlan port: its settings and the remotes the kernel's
    /// FDB floods to now.
    static func status(name: String, _ v: VxlanPortConfig, link: LinkInfo?) -> VxlanStatus {
        let flood = (try? LinkManager().floodRemotes(name: name))?.map(\.host)
        return VxlanStatus(vni: v.vni, local: v.local, dstport: Int(v.dstport), underlay: v.underlay, macvtap: v.macvtap,
                           remotes: v.remotes.summary, learning: v.learning, floodRemotes: flood,
                           mtu: link.map { Int($0.mtu) })
    }
}

extension VxlanLinks {
    /// One line for `stats`: "vni 42 remotes 198.19.0.2,198.19.0.3".
    static func summary(_ v: VxlanPortConfig) -> String {
        "vni \(v.vni) remotes \(v.remotes.summary)"
    }
}

extension VxlanLinks {
    /// What the host says against vxlan port `p` (key, reason): the device and its macvtap must
    /// not exist (the daemon creates both), the underlay must.
    static func hostProblems(_ p: PortConfig, _ v: VxlanPortConfig, host: HostInspector) -> [(String, String)] {
        var out: [(String, String)] = []
        for (key, n) in [(p.nameKey, p.name), ("macvtap", v.macvtap)] {
            if let l = host.link(named: n, netns: nil) {
                out.append((key, "interface '\(n)' already exists\(l.kind.map { $0.isEmpty ? "" : " (a \($0))" } ?? ""); the daemon creates it"))
            }
        }
        if host.link(named: v.underlay, netns: nil) == nil {
            out.append(("underlay", "interface '\(v.underlay)' does not exist (the device the tunnel's packets leave by)"))
        }
        return out
    }
}

extension LinkLifecycle {
    /// Creates a vxlan port's VXLAN device, its flood entries and the passthru macvtap on it, and
    /// records both links (the macvtap goes with the device). A device left by a dead daemon was
    /// deleted by recovery (`wanted` keeps none: the tunnel is cheap to make again), so this
    /// always makes a fresh one.
    func createVxlan(_ port: PortConfig, bridge: String, file: String) throws {
        guard let v = port.vxlan else { return }
        let made: (vxlan: LinkInfo, macvtap: LinkInfo)
        do { made = try VxlanLinks.create(name: port.name, v) } catch { throw DaemonError("\(file): \(port.path): \(error)") }
        let record = ledger.map { l in
            LedgerLink(name: port.name, netns: nil, ifindex: made.vxlan.index, mac: made.vxlan.address?.description,
                       kind: made.vxlan.kind ?? "vxlan", parent: v.underlay, parentIndex: made.vxlan.parentIndex,
                       mode: "vxlan", createdBy: l.run, createdAt: ISO8601DateFormatter().string(from: Date()))
        }
        created.append(CreatedLink(name: port.name, netns: nil, record: record))
        self.record(macvtap: made.macvtap, tap: port.name)
        logger.info("vxlan created", metadata: ["port": "\(port.name)", "bridge": "\(bridge)", "vni": "\(v.vni)",
                                                "local": "\(v.local)", "underlay": "\(v.underlay)", "dstport": "\(v.dstport)",
                                                "remotes": "\(v.remotes.summary)", "mtu": "\(made.vxlan.mtu)",
                                                "macvtap": "\(v.macvtap)", "ifindex": "\(made.vxlan.index)"])
    }
}

extension Daemon {
    /// A reload's changes to running vxlan ports: a changed remote list is applied to the
    /// device's FDB in place (the port keeps forwarding; a new host joins, a gone one stops
    /// getting floods); other changed tunnel settings need the port removed and added again.
    func applyVxlanChanges(_ next: DaemonConfig) {
        for (nb, np) in next.allPorts {
            guard let nv = np.vxlan, let bi = config.bridges.firstIndex(where: { $0.name == nb.name }),
                  let pi = config.bridges[bi].ports.firstIndex(where: { $0.name == np.name && $0.netns == np.netns }),
                  let ov = config.bridges[bi].ports[pi].vxlan, nv != ov else { continue }
            var sameButRemotes = ov
            sameButRemotes.remotes = nv.remotes
            guard sameButRemotes == nv, links.wasCreated(np.name, netns: nil) else {
                logger.warning("reload: vxlan settings other than remotes changed, not applied (remove the port and add it again, or restart)",
                               metadata: ["port": "\(np.name)", "bridge": "\(nb.name)"])
                continue
            }
            if case .list = nv.remotes, case .list = ov.remotes {} else {
                logger.warning("reload: vxlan remotes changed between a list, a group and external: not applied (restart needed)",
                               metadata: ["port": "\(np.name)"])
                continue
            }
            do {
                let (added, removed) = try VxlanLinks.syncRemotes(name: np.name, nv.remotes)
                config.bridges[bi].ports[pi].kind = .vxlan(nv)
                logger.info("vxlan remotes reloaded", metadata: ["port": "\(np.name)", "added": "\(added.joined(separator: ","))",
                                                                 "removed": "\(removed.joined(separator: ","))",
                                                                 "remotes": "\(nv.remotes.summary)"])
            } catch {
                logger.error("reload: vxlan remotes not applied", metadata: ["port": "\(np.name)", "error": "\(error)"])
            }
        }
    }
}
