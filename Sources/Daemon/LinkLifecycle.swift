// LinkLifecycle: the macvtaps the daemon creates for its ports, and nothing else. Creating
// records each link as soon as the kernel has it, so a failure half-way, a signal or a normal
// stop deletes exactly those links — never one the daemon found already there.
import Logging

/// A macvtap the daemon created (and must delete).
public struct CreatedLink: Sendable, Equatable {
    public var name: String
    public var netns: String?
}

public final class LinkLifecycle {
    let logger: Logger
    public private(set) var created: [CreatedLink] = []

    init(logger: Logger) { self.logger = logger }

    /// Creates the macvtap of every port that has a `create` section, in file order. On failure
    /// deletes what it created so far and throws.
    func createAll(_ config: DaemonConfig) throws {
        for (bridge, port) in config.allPorts {
            guard let spec = port.create else { continue }
            do {
                try create(port, spec: spec, bridge: bridge.name, file: config.file)
            } catch {
                deleteAll()
                throw error
            }
        }
    }

    /// Creates one port's macvtap and records it.
    func create(_ port: PortConfig, spec: LinkCreation, bridge: String, file: String) throws {
        do {
            try LinkOps.createMacvtap(name: port.name, spec: spec, queues: port.queues, netns: port.netns)
        } catch {
            throw DaemonError("\(file): \(port.path): \(error)")
        }
        created.append(CreatedLink(name: port.name, netns: port.netns))
        if let state = try? String(contentsOfFile: "/sys/class/net/\(spec.parent)/operstate", encoding: .utf8),
           state.trimmingCharacters(in: .whitespacesAndNewlines) == "down" {
            logger.warning("parent link is down: no frames will flow on this port until it is up",
                           metadata: ["port": "\(port.name)", "parent": "\(spec.parent)"])
        }
        logger.info("link created", metadata: ["port": "\(port.name)", "bridge": "\(bridge)",
                                               "parent": "\(spec.parent)", "mode": "\(spec.mode.rawValue)",
                                               "netns": "\(port.netns ?? "-")"])
    }

    /// Deletes one created link and forgets it.
    func delete(_ name: String, netns: String?) {
        guard let i = created.firstIndex(where: { $0.name == name && $0.netns == netns }) else { return }
        let l = created.remove(at: i)
        deleteLink(l)
    }

    /// Forgets a created link that is gone: a link later appearing under the same name is not
    /// ours and must not be deleted at stop.
    func forget(_ name: String, netns: String?) {
        created.removeAll { $0.name == name && $0.netns == netns }
    }

    func wasCreated(_ name: String, netns: String?) -> Bool {
        created.contains { $0.name == name && $0.netns == netns }
    }

    /// Deletes every created link, newest first; a link already gone is not an error.
    func deleteAll() {
        for l in created.reversed() { deleteLink(l) }
        created = []
    }

    private func deleteLink(_ l: CreatedLink) {
        do {
            if try LinkOps.deleteLink(name: l.name, netns: l.netns) {
                logger.info("link deleted", metadata: ["link": "\(l.name)", "netns": "\(l.netns ?? "-")"])
            } else {
                logger.info("link already gone", metadata: ["link": "\(l.name)", "netns": "\(l.netns ?? "-")"])
            }
        } catch {
            logger.error("cannot delete link", metadata: ["link": "\(l.name)", "error": "\(error)"])
        }
    }
}
