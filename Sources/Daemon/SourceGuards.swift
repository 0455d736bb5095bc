// SourceGuards: the anti-spoofing stage the daemon puts before a bridge's pipeline when the
// bridge has VM ports that ask for it, and the pipeline itself made through the handler registry
// (HandlerRegistry in the Config module: the daemon knows no handler kind by name).
import Config
import Frames
import Handlers

enum SourceGuards {
    /// A bridge's running pipeline: a source guard first if its VM ports need one (a spoofed
    /// frame must not teach the switch a MAC or reach a filter's counters), then one handler per
    /// configured stage, made by its registered kind.
    static func pipeline(for bridge: BridgeConfig) throws -> (guard: SourceGuard?, stages: [RunningHandler]) {
        let guards = bridge.sourceGuards
        let sourceGuard = guards.isEmpty ? nil : SourceGuard(policies: policies(guards))
        let stages = try bridge.pipeline.map { h -> RunningHandler in
            guard let kind = HandlerRegistry.kind(named: h.name) else {
                throw DaemonError("\(h.path): no handler kind '\(h.name)' in this build")
            }
            do { return try kind.instantiate(h, bridge: bridge) } catch let e as HandlerSetupError {
                throw DaemonError(e.description)
            }
        }
        return (sourceGuard, stages)
    }

    /// The source guard's view of the VM ports' anti-spoofing settings (already validated).
    static func policies(_ vms: [String: VMPortConfig]) -> [String: SourceGuard.Policy] {
        vms.mapValues { vm in
            var addresses: SourceAddresses?
            if let list = vm.addresses {
                var a = SourceAddresses()
                for text in list { _ = a.add(text) }
                addresses = a
            }
            return SourceGuard.Policy(checkMAC: vm.mac != nil && vm.antiSpoofing, mac: vm.mac, addresses: addresses)
        }
    }
}
