// LinkWatcher: tells the control loop when a port's link disappears or comes back, from the
// Netlink module's link events (one monitor per namespace the ports live in). If the kernel
// drops notifications (overflow), it re-reads which port links exist.
import Logging
import Netlink

final class LinkWatcher {
    enum Event: Equatable {
        case removed(String, netns: String?)
        case added(String, netns: String?)
        /// A followed link's carrier changed (a tap port: its VMM attached or went away).
        case carrier(String, up: Bool)
    }

    private var ports: [(name: String, netns: String?)]
    private var monitors: [String: LinkMonitor] = [:]   // netns ("" = ours) -> monitor
    private var present: [String: Bool] = [:]
    /// Links (daemon's namespace) whose carrier is followed, with the last state reported.
    private var carrier: [String: Bool] = [:]
    private var pending: [Event] = []
    let logger: Logger

    init(ports: [(String, String?)], logger: Logger) throws {
        self.ports = ports.map { (name: $0.0, netns: $0.1) }
        self.logger = logger
        for p in self.ports { try watchNamespace(p.netns) }
        for p in self.ports { present[p.name] = SystemHost().link(named: p.name, netns: p.netns) != nil }
    }

    private func watchNamespace(_ netns: String?) throws {
        let key = netns ?? ""
        guard monitors[key] == nil else { return }
        monitors[key] = try LinkMonitor(namespace: netns.map { NetworkNamespace.named($0) })
    }

    /// Events since the last call, in order; never blocks.
    func drain() -> [Event] {
        var events: [Event] = pending
        pending = []
        var overflow = false
        for (key, m) in monitors {
            let netns: String? = key.isEmpty ? nil : key
            while true {
                let e: LinkEvent?
                do { e = try m.next(timeout: 0) } catch {
                    logger.warning("link monitor failed; re-reading links", metadata: ["error": "\(error)"])
                    overflow = true
                    break
                }
                guard let e else { break }
                switch e {
                case .overflow:
                    overflow = true
                case .removed(let l):
                    if ports.contains(where: { $0.name == l.name && $0.netns == netns }), present[l.name] == true {
                        present[l.name] = false
                        events.append(.removed(l.name, netns: netns))
                    }
                case .added(let l), .up(let l), .changed(let l), .down(let l):
                    if ports.contains(where: { $0.name == l.name && $0.netns == netns }), present[l.name] == false {
                        present[l.name] = true
                        events.append(.added(l.name, netns: netns))
                    }
                    if netns == nil, let was = carrier[l.name], was != (l.operState == "UP") {
                        carrier[l.name] = !was
                        events.append(.carrier(l.name, up: !was))
                    }
                }
            }
        }
        if overflow { events += rescan() }
        return events
    }

    /// Compares which port links exist with what we last knew.
    private func rescan() -> [Event] {
        var events: [Event] = []
        for p in ports {
            let now = SystemHost().link(named: p.name, netns: p.netns) != nil
            if now != present[p.name] {
                events.append(now ? .added(p.name, netns: p.netns) : .removed(p.name, netns: p.netns))
                present[p.name] = now
            }
        }
        return events
    }

    func watch(_ name: String, netns: String?) {
        try? watchNamespace(netns)
        ports.append((name, netns))
        present[name] = true
    }

    func forget(_ name: String) {
        ports.removeAll { $0.name == name }
        present[name] = nil
        carrier[name] = nil
    }

    /// Reports carrier changes of link `name` (daemon's namespace) from now on, starting with
    /// its current state at the next `drain`.
    func followCarrier(_ name: String) {
        let up = ((try? LinkManager().link(named: name)) ?? nil)?.operState == "UP"
        carrier[name] = up
        pending.append(.carrier(name, up: up))
    }

    func stop() { monitors = [:] }
}
