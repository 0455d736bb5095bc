// LinkRecovery: what a daemon does at start with the ledger a dead predecessor left (SIGKILL,
// crash, OOM). Every ledger entry is checked against the kernel (same name, ifindex, kind and
// MAC: the link is still the one that daemon made); a verified link the configuration still
// wants (same name, namespace, parent, mode, MAC/MTU if given) is reclaimed — kept and used —
// and any other verified link is deleted. A link that fails verification is somebody else's
// and is never touched. The state-directory lock (flock) tells a dead owner from a live one.
import Config
import Foundation
import Glibc
import Logging
import Netlink
import SystemCalls

/// An exclusive flock on `<state dir>/lock`, held for the daemon's life. The kernel drops it
/// when the process dies however it dies, so "lock free" means "the ledger's owner is gone".
final class StateLock {
    /// Held open for the daemon's life; closing it (when the lock goes) releases the flock.
    private let file: OwnedDescriptor
    var fd: Int32 { file.rawValue }
    let path: String

    init(directory: String) throws {
        path = directory + "/lock"
        do { file = try Syscall.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode: 0o644) } catch {
            throw DaemonError("cannot open '\(path)': \(error.reason)")
        }
        do { _ = try Syscall.retryingInterrupts("flock") { flock(fd, LOCK_EX | LOCK_NB) } } catch {
            let e = error.errno
            if e == EWOULDBLOCK {
                let owner = (try? LinkLedger(directory: directory).read())?.map { " (pid \($0.pid))" } ?? ""
                throw DaemonError("state directory '\(directory)' is in use by another tapbridge daemon\(owner); "
                                  + "give this one its own with --state-dir or state-dir")
            }
            throw DaemonError("cannot lock '\(path)': \(String(cString: strerror(e)))")
        }
    }

    /// True if a live process holds the lock of `directory` (read-only probe for --check).
    static func isHeld(directory: String) -> Bool {
        guard let file = try? Syscall.open(directory + "/lock", O_RDONLY | O_CLOEXEC) else { return false }
        if flock(file.rawValue, LOCK_EX | LOCK_NB) == 0 { flock(file.rawValue, LOCK_UN); return false }
        return errno == EWOULDBLOCK
    }
}

extension LinkLifecycle {
    /// A left-over link and what the kernel says about it now.
    enum Leftover {
        case gone
        /// Same name, but not the link the ledger recorded (a different ifindex, kind or MAC).
        case foreign(String)
        case ours(LinkInfo)
    }

    /// Looks `record` up in its namespace and verifies it is still the link that was made.
    static func verify(_ record: LedgerLink) -> Leftover {
        guard let info = try? LinkOps.link(name: record.name, netns: record.netns) else { return .gone }
        if info.index != record.ifindex { return .foreign("ifindex \(info.index), ledger says \(record.ifindex)") }
        if (info.kind ?? "") != record.kind { return .foreign("kind \(info.kind ?? "none"), ledger says \(record.kind)") }
        if let mac = record.mac, info.address?.description != mac {
            return .foreign("MAC \(info.address?.description ?? "none"), ledger says \(mac)")
        }
        return .ours(info)
    }

    /// Whether `config` still declares the link `record` describes, created the same way.
    static func wanted(_ record: LedgerLink, info: LinkInfo, by config: DaemonConfig) -> Bool {
        // The passthru macvtap on a wanted tap port's tap.
        if record.netns == nil, record.kind == "macvtap", record.mode == "passthru",
           let owner = config.allPorts.map(\.port).first(where: { $0.tap?.macvtap == record.name }) {
            return record.parent == owner.name && info.parentName == owner.name && info.mode == .passthru
        }
        guard let port = config.allPorts.map(\.port).first(where: { $0.name == record.name && $0.netns == record.netns }) else { return false }
        if let t = port.tap {
            // A VMM's tap: kept when made with the same queue mode, owner and group (a VMM may
            // still be attached to it).
            return record.kind == "tun" && info.kind == "tun" && record.mode == (t.queues > 1 ? "tap-multi-queue" : "tap")
                && TapLinks.matches(name: record.name, multiQueue: t.queues > 1, user: t.user, group: t.group)
        }
        guard let spec = port.create else { return false }
        guard spec.parent == record.parent, spec.mode.rawValue == record.mode, info.mode?.rawValue == record.mode else { return false }
        // The parent must still be the same device (a parent re-created under its name is not).
        if let pi = record.parentIndex, info.parentIndex != pi || LinkOps.rootLinkName(index: pi) != spec.parent { return false }
        if let mac = spec.mac, info.address != mac { return false }
        if let mtu = spec.mtu, Int(info.mtu) != mtu { return false }
        if spec.mode == .passthru, spec.nopromisc != info.noPromisc { return false }
        if spec.mode == .source, Set(spec.sourceMACs.map(\.description)) != Set(info.sourceMACs.map(\.description)) { return false }
        if port.queues > 1, let q = info.txQueues, Int(q) != port.queues { return false }
        return true
    }

    /// Reads a dead daemon's ledger (the lock is ours, so its owner is gone): reclaims what
    /// `config` still wants, deletes the rest, leaves foreign links alone. Call after `open`.
    func recover(_ config: DaemonConfig) throws {
        guard let ledger, lock != nil else { return }
        guard let old = try ledger.read() else { ledgerOwned = true; return }
        ledgerOwned = true
        if old.bootID != ledger.bootID {
            // Links do not survive a reboot; an ifindex from another boot proves nothing.
            logger.info("ledger from an earlier boot ignored", metadata: ["ledger": "\(ledger.path)", "pid": "\(old.pid)"])
            ledger.remove()
            return
        }
        if old.links.isEmpty { ledger.remove(); return }
        logger.warning("recovering links of a daemon that did not stop cleanly",
                       metadata: ["ledger": "\(ledger.path)", "pid": "\(old.pid)", "links": "\(old.links.count)"])
        for record in old.links {
            let meta: Logger.Metadata = ["link": "\(record.name)", "netns": "\(record.netns ?? "-")", "ifindex": "\(record.ifindex)"]
            switch Self.verify(record) {
            case .gone:
                logger.info("left-over link already gone", metadata: meta)
            case .foreign(let why):
                logger.warning("left-over link not ours any more, left alone", metadata: meta.merging(["why": "\(why)"]) { $1 })
            case .ours(let info):
                if Self.wanted(record, info: info, by: config) {
                    adopt(record)
                    logger.info("link reclaimed", metadata: meta)
                } else {
                    do {
                        _ = try LinkOps.deleteLink(name: record.name, netns: record.netns)
                        deletedLeftovers.append(record.name)
                        logger.info("left-over link deleted (not wanted by the configuration)", metadata: meta)
                    } catch {
                        // Keep it in the ledger: the next start tries again.
                        keep(record)
                        logger.error("cannot delete left-over link", metadata: meta.merging(["error": "\(error)"]) { $1 })
                    }
                }
            }
        }
        persist()
    }

    /// Links of a dead daemon's ledger in `directory` that are verified as that daemon's: the
    /// validator treats them as absent (they will be reclaimed or deleted). With `includeLive`
    /// (`--check` next to a running daemon) a live daemon's links count the same way, so a
    /// file can be checked before `systemctl reload`. Read-only.
    static func leftovers(stateDirectory: String?, includeLive: Bool = false) -> [LedgerLink] {
        guard let dir = stateDirectory, includeLive || !StateLock.isHeld(directory: dir),
              let old = try? LinkLedger(directory: dir).read(), old.bootID == LinkLedger.currentBootID() else { return [] }
        return old.links.filter { if case .ours = verify($0) { return true } else { return false } }
    }
}

extension LinkLedger {
    /// Throws the ledger's problem (a symbolic link, not a regular file, not a ledger), naming
    /// the file: called before the configuration is checked against the host, so a bad ledger
    /// is what the start reports, not the links it would have explained.
    public static func checkBeforeStart(stateDirectory: String?) throws {
        guard let dir = stateDirectory, let why = problem(directory: dir) else { return }
        throw DaemonError(why)
    }
}

/// The host as the validator should see it at start: links a dead daemon left (and that this
/// start will reclaim or delete) do not count as existing.
public struct RecoveringHost: HostInspector {
    let base: HostInspector
    let hidden: [LedgerLink]

    public init(base: HostInspector = SystemHost(), stateDirectory: String?, includeLive: Bool = false) {
        self.base = base
        self.hidden = LinkLifecycle.leftovers(stateDirectory: stateDirectory, includeLive: includeLive)
    }

    /// Left-over links found (for the `--check` report).
    public var leftoverLinks: [String] { hidden.map { l in l.netns.map { "\(l.name)@\($0)" } ?? l.name } }

    public func namespaceExists(_ name: String) -> Bool { base.namespaceExists(name) }
    public func link(named name: String, netns: String?) -> HostLink? {
        hidden.contains { $0.name == name && $0.netns == netns } ? nil : base.link(named: name, netns: netns)
    }
    public func upperLinks(of parent: String) -> [String] {
        base.upperLinks(of: parent).filter { n in !hidden.contains { $0.name == n && $0.netns == nil } }
    }
    public func adoptionDifference(_ port: PortConfig, spec: LinkCreation) -> String? { base.adoptionDifference(port, spec: spec) }
}
