// MDBCommands: the `mdb` control command — each snooping bridge's multicast database (groups,
// their member ports and timers) and its router ports, like `bridge mdb show`. Read on the
// control loop; the datapath is not disturbed (MulticastSnooping keeps the control-side copy).
import Control
import Frames
import Handlers

extension Daemon {
    func registerMDBCommand(_ server: ControlServer) {
        server.register("mdb") { [unowned self] req, _ in
            let bridge = try req.string("bridge")
            return try onLoop { try self.mdbEntries(bridge: bridge) }
        }
    }

    func mdbEntries(bridge: String?) throws -> MDBResult {
        guard let engine else { throw ControlError(.failed, "the engine is not running") }
        if let bridge, !config.bridges.contains(where: { $0.name == bridge }) {
            throw ControlError(.noSuchBridge, "no bridge '\(bridge)' (bridges: \(config.bridges.map(\.name).joined(separator: ", ")))")
        }
        var entries: [MDBEntryInfo] = [], routers: [MDBRouterInfo] = []
        for name in bridge.map({ [$0] }) ?? config.bridges.map(\.name) {
            guard let snooping = engine.learningSwitch(ofBridge: name)?.snooping else {
                if bridge != nil { throw ControlError(.notSupported, "bridge '\(name)' does not snoop multicast (no learning switch, or multicast-snooping = false)") }
                continue
            }
            func port(_ id: PortID) -> String { engine.portName(id, inBridge: name) ?? "\(id)" }
            for m in snooping.memberships() {
                entries.append(MDBEntryInfo(bridge: name, group: m.group.description, vlan: Int(m.vlan), port: port(m.port),
                                            expires: (m.expiresIn * 10).rounded() / 10))
            }
            for r in snooping.routerPorts() {
                routers.append(MDBRouterInfo(bridge: name, port: port(r.port), family: r.ipv6 ? "ipv6" : "ipv4",
                                             expires: (r.expiresIn * 10).rounded() / 10))
            }
        }
        return MDBResult(entries: entries, routers: routers)
    }
}
