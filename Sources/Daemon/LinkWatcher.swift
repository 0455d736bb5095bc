// LinkWatcher: tells the control loop when a port's link disappears or comes back.
// INTERIM: polls link existence on each drain until the Netlink module's event monitor lands.
import Logging

final class LinkWatcher {
    enum Event: Equatable {
        case removed(String, netns: String?)
        case added(String, netns: String?)
    }

    var ports: [(name: String, netns: String?)]
    let logger: Logger
    var present: [String: Bool] = [:]

    init(ports: [(String, String?)], logger: Logger) throws {
        self.ports = ports.map { (name: $0.0, netns: $0.1) }
        self.logger = logger
        for p in self.ports { present[p.name] = SystemHost().link(named: p.name, netns: p.netns) != nil }
    }

    private var lastPoll = 0.0

    /// Events since the last call, in order (links are looked at most twice a second).
    func drain() -> [Event] {
        let now = Double(monotonicNanoseconds()) / 1e9
        guard now - lastPoll >= 0.5 else { return [] }
        lastPoll = now
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
        ports.append((name, netns))
        present[name] = true
    }

    func forget(_ name: String) {
        ports.removeAll { $0.name == name }
        present[name] = nil
    }

    func stop() {}
}
