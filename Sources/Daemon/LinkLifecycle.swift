// LinkLifecycle: the macvtaps the daemon creates for its ports, and nothing else. Creating
// records each link as soon as the kernel has it (in memory and, with a state directory, in
// the crash-recovery ledger), so a failure half-way, a signal or a normal stop deletes exactly
// those links — never one the daemon found already there. After a crash, `recover` reads the
// dead daemon's ledger: links still wanted are reclaimed, the rest deleted (LinkRecovery.swift).
// A link that is already there under a port's name — made by hand, say after the daemon's own
// was deleted under it — is adopted when it is exactly what the port asks for (kind, mode,
// parent, and MAC/MTU/queues/source list where the port sets them): used, never recorded as
// created, so never deleted; one that differs is refused naming the difference.
import Config
import Foundation
import Logging
import Netlink

/// A macvtap the daemon created (and must delete).
public struct CreatedLink: Sendable, Equatable {
    public var name: String
    public var netns: String?
    /// What the ledger says about it (nil without a state directory).
    public var record: LedgerLink?
}

public final class LinkLifecycle {
    let logger: Logger
    public internal(set) var created: [CreatedLink] = []
    /// Tap ports' macvtaps by tap name (they are deleted with their tap).
    var tapMacvtaps: [String: String] = [:]
    /// nil: no state directory (the demo, library use): nothing survives a crash.
    let ledger: LinkLedger?
    var lock: StateLock?
    /// Set once a predecessor's ledger has been dealt with: only then is the ledger ours to
    /// rewrite or remove (an unreadable one stays for a person to look at).
    var ledgerOwned = false
    /// Links reclaimed from a dead daemon's ledger at start (names), for logs and tests.
    public internal(set) var reclaimed: [String] = []
    /// Links of a dead daemon deleted at start because the configuration no longer wants them.
    public internal(set) var deletedLeftovers: [String] = []
    /// Links found in place and used as they are (not created, so not deleted), by name.
    public internal(set) var adopted: [String] = []

    init(logger: Logger, stateDirectory: String? = nil) {
        self.logger = logger
        self.ledger = stateDirectory.map { LinkLedger(directory: $0) }
    }

    /// Takes the state directory (created if missing, locked so two daemons never share a
    /// ledger). Without a state directory this does nothing.
    func open() throws {
        guard let ledger, lock == nil else { return }
        try ledger.prepare()
        lock = try StateLock(directory: ledger.directory)
    }

    /// Creates the macvtap of every port that has a `create` section, in file order, except
    /// those reclaimed from a dead daemon. On failure deletes what it created so far and throws.
    func createAll(_ config: DaemonConfig) throws {
        for (bridge, port) in config.allPorts {
            if port.tap != nil || port.vxlan != nil {
                do {
                    if port.tap != nil { try createTap(port, bridge: bridge.name, file: config.file) } else {
                        try createVxlan(port, bridge: bridge.name, file: config.file)
                    }
                } catch {
                    deleteAll()
                    throw error
                }
                continue
            }
            guard let spec = port.create, !wasCreated(port.name, netns: port.netns) else { continue }
            do {
                try create(port, spec: spec, bridge: bridge.name, file: config.file)
            } catch {
                deleteAll()
                throw error
            }
        }
    }

    /// Creates one port's macvtap and records it; a link already there that is exactly what
    /// the port asks for is adopted instead (used, not recorded, never deleted), one that
    /// differs is refused naming the difference.
    func create(_ port: PortConfig, spec: LinkCreation, bridge: String, file: String) throws {
        if let existing = try? LinkOps.link(name: port.name, netns: port.netns) {
            if let difference = Self.adoptionDifference(existing, port: port, spec: spec) {
                throw DaemonError("\(file): \(port.path).\(port.nameKey): interface '\(port.name)' already exists\(port.netns.map { " in namespace '\($0)'" } ?? "") "
                                  + "and is not what the port asks for (\(difference)); delete it or change the port")
            }
            adopted.append(port.name)
            logger.notice("link adopted: an existing link is exactly what the port asks for; used as it is and left in place at stop",
                          metadata: ["port": "\(port.name)", "bridge": "\(bridge)", "parent": "\(spec.parent)",
                                     "mode": "\(spec.mode.rawValue)", "netns": "\(port.netns ?? "-")", "ifindex": "\(existing.index)"])
            return
        }
        let info: LinkInfo
        do {
            info = try LinkOps.createMacvtap(name: port.name, spec: spec, queues: port.queues, netns: port.netns)
        } catch {
            throw DaemonError("\(file): \(port.path): \(error)")
        }
        let record = ledger.map { l in
            LedgerLink(name: port.name, netns: port.netns, ifindex: info.index, mac: info.address?.description,
                       kind: info.kind ?? "macvtap", parent: spec.parent, parentIndex: info.parentIndex,
                       mode: spec.mode.rawValue, createdBy: l.run, createdAt: ISO8601DateFormatter().string(from: Date()))
        }
        created.append(CreatedLink(name: port.name, netns: port.netns, record: record))
        persist()
        if let state = try? String(contentsOfFile: "/sys/class/net/\(spec.parent)/operstate", encoding: .utf8),
           state.trimmingCharacters(in: .whitespacesAndNewlines) == "down" {
            logger.warning("parent link is down: no frames will flow on this port until it is up",
                           metadata: ["port": "\(port.name)", "parent": "\(spec.parent)"])
        }
        logger.info("link created", metadata: ["port": "\(port.name)", "bridge": "\(bridge)",
                                               "parent": "\(spec.parent)", "mode": "\(spec.mode.rawValue)",
                                               "netns": "\(port.netns ?? "-")", "ifindex": "\(info.index)"])
    }

    /// Creates a tap port's tap (persistent, for a VMM) and the passthru macvtap tapbridge reads
    /// on it, and records both (the macvtap so that after a crash the validator and recovery see
    /// it as ours). A tap reclaimed from a dead daemon is kept (a VMM may still be attached); its
    /// macvtap is made again if it is missing.
    func createTap(_ port: PortConfig, bridge: String, file: String) throws {
        guard let t = port.tap else { return }
        if wasCreated(port.name, netns: nil) {
            if (try? LinkOps.link(name: t.macvtap, netns: nil)) ?? nil == nil {
                forget(t.macvtap, netns: nil)
                do {
                    try TapLinks.addMacvtap(tap: port.name, macvtap: t.macvtap, mtu: t.mtu)
                    if let m = try LinkOps.link(name: t.macvtap, netns: nil) { record(macvtap: m, tap: port.name) }
                } catch {
                    throw DaemonError("\(file): \(port.path): \(error)")
                }
            }
            return
        }
        let made: (tap: LinkInfo, macvtap: LinkInfo)
        do {
            made = try TapLinks.createVMTap(name: port.name, macvtap: t.macvtap, multiQueue: t.queues > 1,
                                            user: t.user, group: t.group, mtu: t.mtu)
        } catch {
            throw DaemonError("\(file): \(port.path): \(error)")
        }
        let record = ledger.map { l in
            LedgerLink(name: port.name, netns: nil, ifindex: made.tap.index, mac: made.tap.address?.description,
                       kind: made.tap.kind ?? "tun", parent: "", parentIndex: nil,
                       mode: t.queues > 1 ? "tap-multi-queue" : "tap", createdBy: l.run,
                       createdAt: ISO8601DateFormatter().string(from: Date()))
        }
        created.append(CreatedLink(name: port.name, netns: nil, record: record))
        self.record(macvtap: made.macvtap, tap: port.name)
        logger.info("tap created", metadata: ["port": "\(port.name)", "bridge": "\(bridge)", "macvtap": "\(t.macvtap)",
                                              "queues": "\(t.queues)", "user": "\(t.user ?? "-")", "group": "\(t.group ?? "-")",
                                              "ifindex": "\(made.tap.index)"])
    }

    /// Records the macvtap on tap `tap` (deleted with the tap; listed so a crash's leftover is known).
    func record(macvtap m: LinkInfo, tap: String) {
        let record = ledger.map { l in
            LedgerLink(name: m.name, netns: nil, ifindex: m.index, mac: m.address?.description, kind: m.kind ?? "macvtap",
                       parent: tap, parentIndex: m.parentIndex, mode: "passthru", createdBy: l.run,
                       createdAt: ISO8601DateFormatter().string(from: Date()))
        }
        created.append(CreatedLink(name: m.name, netns: nil, record: record))
        tapMacvtaps[tap] = m.name
        persist()
    }

    /// Why the existing link `info` is not what `port` asks for, or nil when it is (it may then
    /// be adopted): a macvtap in the same mode on the same parent (in the daemon's namespace),
    /// with the MAC, MTU, queue count, nopromisc and source list the port sets, if it sets them.
    static func adoptionDifference(_ info: LinkInfo, port: PortConfig, spec: LinkCreation) -> String? {
        guard info.kind == "macvtap" else { return "it is a \(info.kind ?? "link of unknown kind"), not a macvtap" }
        if info.mode?.rawValue != spec.mode.rawValue {
            return "mode \(info.mode?.rawValue ?? "unknown"), the port asks for \(spec.mode.rawValue)"
        }
        let parent = info.parentIndex.flatMap { LinkOps.rootLinkName(index: $0) }
        if parent != spec.parent { return "parent \(parent.map { "'\($0)'" } ?? "unknown"), the port asks for '\(spec.parent)'" }
        if let mac = spec.mac, info.address != mac { return "MAC \(info.address?.description ?? "none"), the port asks for \(mac)" }
        if let mtu = spec.mtu, Int(info.mtu) != mtu { return "MTU \(info.mtu), the port asks for \(mtu)" }
        if spec.mode == .passthru, spec.nopromisc != info.noPromisc {
            return "nopromisc \(info.noPromisc), the port asks for \(spec.nopromisc)"
        }
        if spec.mode == .source, Set(spec.sourceMACs) != Set(info.sourceMACs) {
            return "source MACs \(info.sourceMACs.map(\.description).sorted().joined(separator: ",")), the port asks for "
                + spec.sourceMACs.map(\.description).sorted().joined(separator: ",")
        }
        if port.queues > 1, let q = info.txQueues, Int(q) != port.queues { return "\(q) queues, the port asks for \(port.queues)" }
        return nil
    }

    /// Records a link taken over from a dead daemon as ours.
    func adopt(_ record: LedgerLink) {
        created.append(CreatedLink(name: record.name, netns: record.netns, record: record))
        reclaimed.append(record.name)
        if record.netns == nil, record.kind == "macvtap", record.mode == "passthru" { tapMacvtaps[record.parent] = record.name }
    }

    /// Keeps a left-over link in the ledger without using it (its deletion failed; next start retries).
    func keep(_ record: LedgerLink) {
        created.append(CreatedLink(name: record.name, netns: record.netns, record: record))
    }

    /// Deletes one created link and forgets it.
    func delete(_ name: String, netns: String?) {
        guard let i = created.firstIndex(where: { $0.name == name && $0.netns == netns }) else { return }
        let l = created.remove(at: i)
        deleteLink(l)
        // A tap's macvtap went with it.
        if netns == nil, let m = tapMacvtaps.removeValue(forKey: name) { created.removeAll { $0.name == m && $0.netns == nil } }
        persist()
    }

    /// Forgets a created link that is gone: a link later appearing under the same name is not
    /// ours and must not be deleted at stop.
    func forget(_ name: String, netns: String?) {
        created.removeAll { $0.name == name && $0.netns == netns }
        persist()
    }

    func wasCreated(_ name: String, netns: String?) -> Bool {
        created.contains { $0.name == name && $0.netns == netns }
    }

    /// Deletes every created link, newest first; a link already gone is not an error. With a
    /// state directory the ledger then goes too (a clean stop leaves nothing to recover).
    func deleteAll() {
        var failed: [CreatedLink] = []
        for l in created.reversed() where !deleteLink(l) { failed.append(l) }
        created = failed
        if failed.isEmpty, ledgerOwned { ledger?.remove() } else { persist() }
    }

    /// Releases the state directory lock (after `deleteAll`).
    func close() {
        ledgerOwned = false
        lock = nil
    }

    /// Rewrites the ledger from `created`. A ledger that cannot be written is logged: the
    /// daemon keeps forwarding, but a crash would then leave these links behind.
    func persist() {
        guard let ledger, ledgerOwned else { return }
        do {
            try ledger.write(created.compactMap(\.record))
        } catch {
            logger.error("cannot write the link ledger: links created now would survive a crash",
                         metadata: ["error": "\(error)"])
        }
    }

    @discardableResult
    private func deleteLink(_ l: CreatedLink) -> Bool {
        do {
            // A link that vanished and came back under our name is someone else's.
            if let r = l.record, let now = try LinkOps.link(name: l.name, netns: l.netns), now.index != r.ifindex {
                logger.warning("link not deleted: same name, different link (not ours)",
                               metadata: ["link": "\(l.name)", "ifindex": "\(now.index)", "created-ifindex": "\(r.ifindex)"])
                return true
            }
            if try LinkOps.deleteLink(name: l.name, netns: l.netns) {
                logger.info("link deleted", metadata: ["link": "\(l.name)", "netns": "\(l.netns ?? "-")"])
            } else {
                logger.info("link already gone", metadata: ["link": "\(l.name)", "netns": "\(l.netns ?? "-")"])
            }
            return true
        } catch {
            logger.error("cannot delete link", metadata: ["link": "\(l.name)", "error": "\(error)"])
            return false
        }
    }
}
