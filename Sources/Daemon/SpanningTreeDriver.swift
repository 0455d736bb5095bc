// SpanningTreeDriver: runs the spanning tree of every bridge whose configuration asks for it
// (`stp = "stp"` or `"rstp"`). Owns the daemon's side only: starting each bridge's SpanningTreeController
// (in its learning switch) with the bridge identifier, polling them from the control loop
// (BPDUs in and out, timers: every wake-up, at most 0.2 s apart), handing their BPDUs to the
// datapath with `Engine.inject`, telling them of port links going down and up, and logging
// port state changes. The protocol itself is in Handlers/SpanningTree.
#if canImport(Glibc)
import Glibc
#endif
import Config
import Control
import Datapath
import Foundation
import Frames
import Handlers
import Logging
import Netlink

final class SpanningTreeDriver {
    struct Running {
        let name: String
        let bridge: Bridge
        let controller: SpanningTreeController
    }
    private(set) var running: [Running] = []

    /// Starts the spanning tree of each configured bridge (after the engine started).
    func start(_ config: DaemonConfig, binding: EngineBinding, logger: Logger) {
        for b in config.bridges {
            guard let settings = b.spanningTree, let bridge = binding.engine.bridge(named: b.name),
                  let sw = binding.learningSwitch(ofBridge: b.name) else { continue }
            let mac = Self.bridgeMAC(b.name)
            sw.spanningTree.enable(settings: settings, bridgeMAC: mac, nowMs: Self.nowMs())
            running.append(Running(name: b.name, bridge: bridge, controller: sw.spanningTree))
            logger.info(settings.rapid ? "spanning tree on (802.1w RSTP)" : "spanning tree on (802.1D)", metadata: [
                "bridge": "\(b.name)", "bridge-id": "\(BridgeID(priority: settings.priority, mac: mac))",
                "hello-time": "\(settings.helloTime)", "forward-delay": "\(settings.forwardDelay)",
                "max-age": "\(settings.maxAge)"])
        }
    }

    /// Control loop, every wake-up.
    func poll(engine: Engine, logger: Logger) {
        let now = Self.nowMs()
        for r in running {
            let changes = r.controller.poll(nowMs: now) { port, bytes in
                bytes.withUnsafeBytes { engine.inject($0, bridge: r.bridge, port: port) }
            }
            guard !changes.isEmpty else { continue }
            let table = r.bridge.portTable
            for c in changes {
                logger.info("spanning tree: port \(c.state)", metadata: [
                    "bridge": "\(r.name)", "port": "\(table.ports.first { $0.id == c.port }?.name ?? "\(c.port)")"])
            }
        }
    }

    /// A port link's operational state (the link watcher's events).
    func setPortLink(_ name: String, up: Bool) {
        for r in running { r.controller.setPortLink(name, up: up, nowMs: Self.nowMs()) }
    }

    /// The spanning tree of bridge `name`, if it runs one.
    func controller(ofBridge name: String) -> SpanningTreeController? { running.first { $0.name == name }?.controller }

    /// A macvtap passes a multicast frame only for groups on its multicast list: a port link of
    /// a spanning-tree bridge gets all-multicast, so BPDUs (01:80:C2:00:00:00) reach the daemon.
    static func receiveBPDUs(on p: PortConfig, logger: Logger) {
        guard p.hasLink else { return }
        do {
            try LinkManager(namespace: p.netns.map { NetworkNamespace.named($0) }).setAllMulticast(name: p.name, true)
        } catch {
            logger.warning("spanning tree: cannot turn all-multicast on; BPDUs may not reach this port",
                           metadata: ["port": "\(p.name)", "error": "\(error)"])
        }
    }

    static func nowMs() -> UInt64 { MonotonicClock.nanoseconds() / 1_000_000 }

    /// The MAC in the bridge identifier: locally administered, stable across restarts on one
    /// host (a hash of /etc/machine-id and the bridge's name), different between hosts and bridges.
    static func bridgeMAC(_ bridge: String) -> MACAddress {
        let machine = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8)) ?? "\(gethostid())"
        var h: UInt64 = 0xcbf2_9ce4_8422_2325   // FNV-1a
        for byte in Array((machine.trimmingCharacters(in: .whitespacesAndNewlines) + "/" + bridge).utf8) {
            h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        // First octet: locally administered (0x02), unicast (0x01 clear).
        return MACAddress(rawValue: (h & 0x0000_FCFF_FFFF_FFFF) | 0x0000_0200_0000_0000)
    }
}

extension Daemon {
    /// The `stp` control command: every spanning-tree bridge (or `bridge`), on the control loop.
    func spanningTreeStatus(bridge: String?) throws -> SpanningTreeResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        if let bridge, !config.bridges.contains(where: { $0.name == bridge }) {
            throw ControlError(.noSuchBridge, "no bridge '\(bridge)' (bridges: \(config.bridges.map(\.name).joined(separator: ", ")))")
        }
        var out: [SpanningTreeBridgeInfo] = []
        for r in engine.spanningTrees.running where bridge == nil || r.name == bridge {
            guard let s = r.controller.status() else { continue }
            out.append(SpanningTreeBridgeInfo(
                bridge: r.name, mode: s.mode, bridgeId: s.bridgeID.description, rootId: s.rootID.description,
                isRoot: s.rootID == s.bridgeID, rootPathCost: s.rootPathCost, rootPort: s.rootPort,
                topologyChange: s.topologyChange, topologyChanges: s.topologyChanges, helloTime: s.helloTime,
                forwardDelay: s.forwardDelay, maxAge: s.maxAge,
                ports: s.ports.map {
                    SpanningTreePortInfo(name: $0.name, state: $0.state.description, role: $0.role.rawValue,
                                         designatedBridge: $0.designatedBridge.description,
                                         designatedPort: String($0.designatedPort, radix: 16),
                                         protocol: $0.protocolVersion, edge: s.mode == "rstp" ? $0.edge : nil)
                }))
        }
        if let bridge, out.isEmpty {
            throw ControlError(.notSupported, "bridge '\(bridge)' runs no spanning tree (stp = \"rstp\" or \"stp\" turns it on)")
        }
        return SpanningTreeResult(bridges: out)
    }
}
