// LinkWatcher: tells the control loop when a port's link disappears or comes back, from the
// Netlink module's link events (one monitor per namespace the ports live in). If the kernel
// drops notifications (overflow), it re-reads which port links exist. It also follows each port
// link's operational state: a macvtap whose parent is down (LOWERLAYERDOWN) or that is down
// itself drops every frame written to it, so the daemon marks the port down in the engine (the
// frames are then counted as port-down drops, and `ports` shows it) until it is up again.
import Logging
import Netlink

final class LinkWatcher {
    enum Event: Equatable {
        case removed(String, netns: String?)
        case added(String, netns: String?)
        /// The link's operational state changed: `up` false while it cannot carry frames.
        case operational(String, netns: String?, up: Bool)
    }

    /// Whether a link in this state carries frames (UNKNOWN: drivers that do not report one).
    static func carriesFrames(_ l: LinkInfo) -> Bool { l.isUp && (l.operState == "UP" || l.operState == "UNKNOWN") }

    private var ports: [(name: String, netns: String?)]
    private var monitors: [String: LinkMonitor] = [:]   // netns ("" = ours) -> monitor
    private var present: [String: Bool] = [:]
    /// Last known operational state per port link (absent: not known yet).
    private var operUp: [String: Bool] = [:]
    /// Events found outside `drain` (the initial states), handed out by the next `drain`.
    private var pending: [Event] = []
    let logger: Logger

    init(ports: [(String, String?)], logger: Logger) throws {
        self.ports = ports.map { (name: $0.0, netns: $0.1) }
        self.logger = logger
        for p in self.ports { try watchNamespace(p.netns) }
        for p in self.ports { present[p.name] = SystemHost().link(named: p.name, netns: p.netns) != nil }
        for p in self.ports { readOperationalState(p.name, netns: p.netns) }
    }

    /// Reads a port link's operational state now; a port that cannot carry frames is reported.
    private func readOperationalState(_ name: String, netns: String?) {
        guard let l = try? LinkOps.link(name: name, netns: netns) else { return }
        noteOperational(l, netns: netns, into: &pending)
    }

    private func noteOperational(_ l: LinkInfo, netns: String?, into events: inout [Event]) {
        let up = Self.carriesFrames(l)
        if operUp[l.name] != up {
            // Unknown before and up now is the normal start: nothing to say.
            if operUp[l.name] != nil || !up { events.append(.operational(l.name, netns: netns, up: up)) }
            operUp[l.name] = up
        }
    }

    private func watchNamespace(_ netns: String?) throws {
        let key = netns ?? ""
        guard monitors[key] == nil else { return }
        monitors[key] = try LinkMonitor(namespace: netns.map { NetworkNamespace.named($0) })
    }

    /// Events since the last call, in order; never blocks.
    func drain() -> [Event] {
        var events = pending
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
                    guard ports.contains(where: { $0.name == l.name && $0.netns == netns }) else { break }
                    if present[l.name] == false {
                        present[l.name] = true
                        operUp[l.name] = nil   // a new link: its state is read afresh
                        events.append(.added(l.name, netns: netns))
                    }
                    noteOperational(l, netns: netns, into: &events)
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
            if now, let l = try? LinkOps.link(name: p.name, netns: p.netns) { noteOperational(l, netns: p.netns, into: &events) }
        }
        return events
    }

    func watch(_ name: String, netns: String?) {
        try? watchNamespace(netns)
        ports.append((name, netns))
        present[name] = true
        readOperationalState(name, netns: netns)
    }

    func forget(_ name: String) {
        ports.removeAll { $0.name == name }
        present[name] = nil
        operUp[name] = nil
    }

    /// Whether port `name`'s link can carry frames, as last seen (nil: not known).
    func isOperational(_ name: String) -> Bool? { operUp[name] }

    func stop() { monitors = [:] }
}
