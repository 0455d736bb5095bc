// tbb-vmbridge: tapbridge with a VM-socket port in the path, for bench/run. One engine, two
// bridges joined only through VM stream ports (QEMU `-netdev stream` framing):
//   bridge a: macvtap A  <->  vm port a (listens on SOCK_A)
//   bridge b: vm port b (listens on SOCK_B)  <->  macvtap B
// bench/vmrelay.c connects to both sockets and copies frames between them (the "VM"), so every
// frame between the two hosts leaves and re-enters tapbridge through the length-prefixed stream
// path (engine framing, writev queue, supervisor) exactly as a QEMU guest's would.
// Usage: tbb-vmbridge MACVTAP_A MACVTAP_B SOCK_A SOCK_B [WORKERS]   (runs until SIGTERM/SIGINT)
import Foundation
import Tapbridge

let args = CommandLine.arguments
guard args.count >= 5 else {
    FileHandle.standardError.write("usage: tbb-vmbridge MACVTAP_A MACVTAP_B SOCK_A SOCK_B [WORKERS]\n".data(using: .utf8)!)
    exit(2)
}
let workers = args.count > 5 ? Int(args[5]) ?? 1 : 1

// Block the stop signals before any thread starts so only sigwait below sees them.
var stopSignals = sigset_t()
sigemptyset(&stopSignals)
sigaddset(&stopSignals, SIGTERM)
sigaddset(&stopSignals, SIGINT)
pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

func fail(_ what: String, _ error: Error) -> Never {
    FileHandle.standardError.write("tbb-vmbridge: \(what): \(error)\n".data(using: .utf8)!)
    exit(1)
}

var config = EngineConfiguration(workers: workers)
config.log = { level, message in
    if level != .debug && level != .info { FileHandle.standardError.write("tbb-vmbridge: \(message)\n".data(using: .utf8)!) }
}
let engine = Engine(configuration: config)
let supervisor = VMPortSupervisor(engine: engine)
var vmPorts: [(VMStreamServerPort, PortID, Bridge)] = []
do {
    for (i, name) in ["a", "b"].enumerated() {
        let pipeline = HandlerPipeline([LearningSwitch()])
        // No GSO on a bridge with a VM stream port: QEMU's stream netdev carries no vnet header.
        let bridge = engine.addBridge(name: name, pipeline: pipeline, offloads: [])
        try bridge.attach(MacvtapPort(name: args[1 + i], vnetHeader: false))
        let vm = try VMStreamServerPort(name: "vm-\(name)", path: args[3 + i])
        vmPorts.append((vm, try bridge.attach(vm), bridge))
    }
    try engine.start()
} catch { fail("start", error) }
for (port, id, bridge) in vmPorts { supervisor.watch(port, id: id, in: bridge) }

var sig: Int32 = 0
sigwait(&stopSignals, &sig)
supervisor.stop()
engine.stop()
for b in engine.snapshot().bridges {
    for p in b.ports {
        FileHandle.standardError.write("tbb-vmbridge: \(b.name)/\(p.name) rx \(p.rxFrames) tx \(p.txFrames) drops \(p.totalDrops) \(p.drops.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ","))\n".data(using: .utf8)!)
    }
}
