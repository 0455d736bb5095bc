// VMPortCounters: counters a VM port keeps itself, outside the engine's per-port counters —
// today the second connections a stream server port refused while a VM was attached — carried
// into the metrics endpoint (`tapbridge_vm_refused_connections_total{port}`) by the control
// loop. `tapbridge stats` reads them directly (ControlCommands.statistics).
import MetricsEndpoint

extension Daemon {
    /// Adds what each VM port counted since the last call to its metric. Control thread.
    func publishVMPortCounters() {
        guard DaemonMetrics.isBootstrapped, let engine else { return }
        for (name, port) in engine.vmServers {
            let now = port.refusedConnections
            let before = vmRefusedPublished[name] ?? 0
            guard now > before else { continue }
            DaemonMetrics.count("tapbridge_vm_refused_connections_total", [("port", name)], by: Int64(now - before))
            vmRefusedPublished[name] = now
        }
    }
}
