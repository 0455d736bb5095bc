// SwitchGuardCommands: the daemon's side of the learning switch's guards and FDB events: the
// guard sweep each second with its log lines (a port blocked by the loop guard or a MAC limit,
// and unblocked after the back-off), the per-port guard policy of a port added at run time,
// and the control commands `fdb.flush` and `fdb.monitor` (streaming: one JSON line per event
// after the first reply, until the client shuts its side or the daemon stops).
import Config
import Control
import Foundation
import Frames
import Handlers
import Logging
import SystemCalls

/// One line of the `fdb.monitor` stream.
public struct FDBMonitorEvent: Codable, Equatable, Sendable {
    public var event: String
    public var bridge: String
    public var mac: String?
    public var vlan: Int?
    public var port: String
    /// A move's previous port.
    public var from: String?
    /// Why a port was blocked or unblocked.
    public var reason: String?
    /// CLOCK_MONOTONIC milliseconds (low 32 bits) of the event.
    public var ms: UInt32
    /// Events lost before this one (ring full or a slow reader), when any.
    public var lost: UInt64?
}

/// `fdb.flush`'s result.
public struct FDBFlushResult: Codable, Equatable, Sendable {
    public var flushed: Int
    public var done: String
}

extension Daemon {
    /// Runs each learning switch's guard sweep (at most once a second) and logs what changed.
    func sweepSwitchGuards() {
        guard let engine else { return }
        for b in config.bridges {
            guard let sw = engine.learningSwitch(ofBridge: b.name), let notices = sw.sweepGuardsIfDue() else { continue }
            for n in notices {
                let port = engine.portName(n.port, inBridge: b.name) ?? "\(n.port)"
                if n.blocked {
                    logger.warning("port blocked by the switch's guard", metadata: [
                        "bridge": "\(b.name)", "port": "\(port)", "reason": "\(n.reason.name)", "mac": "\(n.mac)",
                        "vlan": "\(n.vlan)", "flushed": "\(n.flushed)", "backoff": "\(b.learningSwitch?.blockSeconds ?? 30)"])
                } else {
                    logger.notice("port unblocked after the back-off", metadata: [
                        "bridge": "\(b.name)", "port": "\(port)", "reason": "\(n.reason.name)"])
                }
            }
        }
    }

    /// Why the bridge's learning switch blocks `port` now (nil: it does not, or no switch).
    func switchGuardBlock(port: String, bridge: String) -> String? {
        guard let engine, let id = engine.portID(port, inBridge: bridge) else { return nil }
        return engine.learningSwitch(ofBridge: bridge)?.blockReason(id)?.name
    }

    /// A port added at run time: its guard keys to the bridge's switch, before it attaches.
    func applySwitchGuards(_ p: PortConfig, bridge: String) {
        engine?.learningSwitch(ofBridge: bridge)?.setPortPolicy(p.switchGuards.isDefault ? nil : p.switchGuards, forPort: p.name)
    }

    /// SIGHUP: ports kept whose guard keys changed get the new ones at once.
    func reloadSwitchGuards(_ next: DaemonConfig) {
        for nb in next.bridges {
            guard let bi = config.bridges.firstIndex(where: { $0.name == nb.name }) else { continue }
            for np in nb.ports {
                guard let pi = config.bridges[bi].ports.firstIndex(where: { $0.name == np.name && $0.netns == np.netns }),
                      config.bridges[bi].ports[pi].switchGuards != np.switchGuards else { continue }
                applySwitchGuards(np, bridge: nb.name)
                config.bridges[bi].ports[pi].switchGuards = np.switchGuards
                logger.info("switch guard keys reloaded", metadata: ["bridge": "\(nb.name)", "port": "\(np.name)"])
            }
        }
    }

    func registerSwitchGuardCommands(_ server: ControlServer) {
        server.register("fdb.flush") { [unowned self] req, _ in
            let (bridge, port) = (try req.string("bridge"), try req.string("port"))
            let vlan = try req.int("vlan")
            if let vlan, !(0...4094).contains(vlan) { throw ControlError(.invalidArgument, "vlan \(vlan) is out of range 0...4094") }
            let dynamic = req.args?["dynamic"]?.bool ?? false
            return try onLoop { try self.flushFDB(bridge: bridge, port: port, vlan: vlan.map { UInt16($0) }, dynamicOnly: dynamic) }
        }
        server.register("fdb.monitor") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            return try controlQueue.run { [unowned self] in
                guard let engine = self.engine else { throw ControlError(.failed, "the engine is not running") }
                var names = config.bridges.map(\.name)
                if let bridge {
                    guard names.contains(bridge) else { throw ControlError(.noSuchBridge, "no bridge '\(bridge)' (bridges: \(names.joined(separator: ", ")))") }
                    names = [bridge]
                }
                let switches = names.compactMap { n in engine.learningSwitch(ofBridge: n).map { (n, $0) } }
                if switches.isEmpty { throw ControlError(.notSupported, "no learning switch\(bridge.map { " in bridge '\($0)'" } ?? "") (no FDB)") }
                let subs = switches.map { ($0.0, $0.1, $0.1.subscribeEvents()) }
                let first = JSONValue.object(["bridges": .array(switches.map { .string($0.0) })])
                return .takeOver(first: first) { [logger = self.logger] conn in
                    Self.streamFDBEvents(conn, subscriptions: subs, logger: logger)
                }
            }
        }
    }

    func flushFDB(bridge: String?, port: String?, vlan: UInt16?, dynamicOnly: Bool) throws -> FDBFlushResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        var targets: [String]
        if let bridge {
            guard config.bridges.contains(where: { $0.name == bridge }) else {
                throw ControlError(.noSuchBridge, "no bridge '\(bridge)' (bridges: \(config.bridges.map(\.name).joined(separator: ", ")))")
            }
            targets = [bridge]
        } else if let port {
            targets = config.allPorts.filter { $0.port.name == port }.map(\.bridge.name)
        } else {
            targets = config.bridges.map(\.name)
        }
        if let port, targets.allSatisfy({ engine.portID(port, inBridge: $0) == nil }) {
            throw ControlError(.noSuchPort, "no attached port '\(port)'\(bridge.map { " in bridge '\($0)'" } ?? "")")
        }
        var total = 0
        var flushedIn: [String] = []
        for b in targets {
            guard let sw = engine.learningSwitch(ofBridge: b) else {
                if bridge != nil { throw ControlError(.notSupported, "bridge '\(b)' has no learning switch (no FDB)") }
                continue
            }
            var id: PortID?
            if let port {
                guard let p = engine.portID(port, inBridge: b) else { continue }
                id = p
            }
            total += sw.flush(port: id, vlan: vlan, dynamicOnly: dynamicOnly)
            flushedIn.append(b)
        }
        let what = [port.map { "port \($0)" }, vlan.map { "vlan \($0)" }, dynamicOnly ? "learned only" : nil].compactMap { $0 }
        logger.info("FDB flushed", metadata: ["bridges": "\(flushedIn.joined(separator: ","))", "entries": "\(total)",
                                             "match": "\(what.isEmpty ? "all" : what.joined(separator: ", "))"])
        return FDBFlushResult(flushed: total, done: "\(total) entr\(total == 1 ? "y" : "ies") flushed from bridge \(flushedIn.joined(separator: ", "))"
                                + (what.isEmpty ? "" : " (\(what.joined(separator: ", ")))"))
    }

    /// Runs on the connection's thread: polls the subscriptions every 100 ms and writes each
    /// event as a JSON line, until the client shuts its side, goes away or the daemon stops.
    static func streamFDBEvents(_ conn: ControlConnection, subscriptions: [(String, LearningSwitch, FDBEventSubscription)], logger: Logger) {
        defer { for (_, _, s) in subscriptions { s.cancel() } }
        logger.info("fdb monitor started", metadata: ["bridges": "\(subscriptions.map(\.0).joined(separator: ","))"])
        let fd = conn.fileDescriptor.rawValue
        var scratch = [UInt8](repeating: 0, count: 256)
        var reported: [String: UInt64] = [:]
        while !conn.isStopping() {
            var out: [UInt8] = []
            for (bridge, sw, sub) in subscriptions {
                let events = sub.poll()
                let lost = sub.lost &+ sw.droppedEvents
                var newlyLost: UInt64? = lost > reported[bridge, default: 0] ? lost - reported[bridge, default: 0] : nil
                reported[bridge] = lost
                guard !events.isEmpty else { continue }
                let table = sw.portTable
                func name(_ p: PortID) -> String { table[p]?.name ?? "\(p)" }
                for e in events {
                    let blockish = e.kind == .blocked || e.kind == .unblocked
                    let line = FDBMonitorEvent(
                        event: e.kind.name, bridge: bridge, mac: e.mac == .zero ? nil : e.mac.description,
                        vlan: blockish ? nil : Int(e.vlan), port: name(e.port),
                        from: e.kind == .moved ? name(PortID(e.detail)) : nil,
                        reason: blockish ? (PortGuardReason(rawValue: e.detail) ?? .none).name : nil,
                        ms: e.milliseconds, lost: newlyLost)
                    newlyLost = nil
                    if let data = try? JSONCodec.encoder.encode(line) { out += Array(data); out.append(0x0A) }
                }
            }
            if !out.isEmpty {
                guard writeAll(fd, out) else { break }
            }
            // The client sends nothing more: end of file or an error means it is gone.
            guard let revents = try? Syscall.poll(fd, events: Int16(POLLIN), timeout: 100) else { break }
            if revents & Int16(POLLERR | POLLNVAL | POLLHUP) != 0 { break }
            if revents != 0 {
                guard let r = try? Syscall.receive(fd, &scratch, scratch.count, flags: Int32(MSG_DONTWAIT)) else { break }
                if case .processed(0) = r { break }
            }
        }
        logger.info("fdb monitor ended", metadata: ["bridges": "\(subscriptions.map(\.0).joined(separator: ","))"])
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let r = bytes.withUnsafeBytes { b in try? Syscall.send(fd, b.baseAddress! + off, bytes.count - off, flags: Int32(MSG_NOSIGNAL)) }
            guard case .processed(let n)? = r, n > 0 else { return false }
            off += n
        }
        return true
    }
}
