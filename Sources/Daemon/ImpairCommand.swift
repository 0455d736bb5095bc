// ImpairCommand: the control socket's `impair.set`, `impair.show` and `impair.clear`: a port's
// impairment changed live on the running `impair` handler of its bridge (swapped atomically,
// Handlers/Impair/FrameImpairer.swift). The words are parsed by the same parser as the file.
import Config
import Control
import Foundation
import Frames
import Handlers

extension Daemon {
    func registerImpairCommands(_ server: ControlServer) {
        server.register("impair.set") { [unowned self] req, _ in
            let port = try req.requiredString("port")
            let text = try req.requiredString("settings")
            guard text.utf8.count <= 1024 else { throw ControlError(.invalidArgument, "'settings' is longer than 1024 bytes") }
            let spec: ImpairSpec
            do { spec = try ImpairSpec(parsing: text) } catch {
                throw ControlError(.invalidArgument, "impair \(port): \(error)")
            }
            return try onLoop { try self.setImpairment(port: port, spec: spec) }
        }
        server.register("impair.clear") { [unowned self] req, _ in
            let port = try req.requiredString("port")
            return try onLoop { try self.setImpairment(port: port, spec: nil) }
        }
        server.register("impair.show") { [unowned self] req, _ in
            let port = try req.string("port")
            return try onLoop { try self.impairments(port: port) }
        }
    }

    /// The bridge holding port `port` and its running impair handler.
    func impairer(forPort port: String) throws -> (bridge: String, handler: FrameImpairer) {
        let owners = config.bridges.filter { $0.ports.contains { $0.name == port } }
        guard let b = owners.first else { throw ControlError(.noSuchPort, "no port named '\(port)'") }
        guard let h = engine?.handler(FrameImpairer.self, ofBridge: b.name) else {
            throw ControlError(.notSupported, "bridge '\(b.name)' has no impair handler in its pipeline (add \"impair\" to its pipeline in the file and restart)")
        }
        return (b.name, h)
    }

    func setImpairment(port: String, spec: ImpairSpec?) throws -> ImpairResult {
        let (bridge, h) = try impairer(forPort: port)
        if let spec { h.set(port: port, spec) } else { h.clear(port: port) }
        logger.info(spec == nil ? "impairment cleared" : "impairment set",
                    metadata: ["port": "\(port)", "bridge": "\(bridge)", "settings": "\(spec?.description ?? "")"])
        var r = try impairments(port: port)
        r.note = "runtime change: kept until the daemon stops, or a reload (SIGHUP) finds this bridge's impair tables changed in the file and applies them"
        return r
    }

    func impairments(port: String?) throws -> ImpairResult {
        var out: [ImpairInfo] = []
        if let port {
            let (bridge, h) = try impairer(forPort: port)
            out.append(ImpairInfo(bridge: bridge, port: port, settings: h.current[port]?.description ?? "",
                                  counters: h.counters(port: port)))
        } else {
            for b in config.bridges {
                guard let h = engine?.handler(FrameImpairer.self, ofBridge: b.name) else { continue }
                for (name, spec) in h.current.sorted(by: { $0.key < $1.key }) {
                    out.append(ImpairInfo(bridge: b.name, port: name, settings: spec.description, counters: h.counters(port: name)))
                }
            }
        }
        return ImpairResult(impairments: out)
    }
}
