// CaptureCommand: the control socket's streaming `capture` command (docs/capture.md). Resolves
// the target (a port, or a bridge: all its ports) on the control loop, answers with the
// interface list, then takes the connection over: the capture session writes pcapng straight
// into the socket until the client shuts its side, the count is reached, the client goes away
// or the daemon stops. The stream ends with statistics blocks carrying captured/dropped.
import Capture
import Control
import Datapath
import Foundation
import Frames
import Handlers
import PacketFilter
import SystemCalls
import Logging

extension Daemon {
    func registerCaptureCommand(_ server: ControlServer) {
        server.register("capture") { [unowned self] req, _ in
            let target = try req.requiredString("target")
            var direction = CaptureDirection.both
            if let d = try req.string("direction") {
                guard let v = CaptureDirection(name: d) else {
                    throw ControlError(.invalidArgument, "'direction' must be 'ingress', 'egress' or 'both', not '\(d)'")
                }
                direction = v
            }
            let filter = try req.string("filter").flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
            if let f = filter {
                do { _ = try PcapProgram(f) } catch { throw ControlError(.invalidArgument, "capture filter \"\(f)\": \(error)") }
            }
            var options = CaptureOptions()
            if let c = try req.int("count") {
                guard c > 0 else { throw ControlError(.invalidArgument, "'count' must be positive") }
                options.count = c
            }
            if let s = try req.int("snaplen") {
                guard (1...CaptureWriter.maxSnaplen).contains(s) else {
                    throw ControlError(.invalidArgument, "'snaplen' must be 1...\(CaptureWriter.maxSnaplen)")
                }
                options.snaplen = s
            }
            return try controlQueue.run { [unowned self] in
                guard let engine = self.engine?.engine else { throw ControlError(.failed, "the engine is not running") }
                let (bridge, ports) = try Self.captureTarget(target, in: engine)
                for id in ports where engine.isCaptured(id, in: bridge) {
                    throw ControlError(.failed, "port '\(bridge.portTable[id]?.name ?? "\(id)")' is already being captured")
                }
                let names = ports.map { bridge.portTable[$0]?.name ?? "\($0)" }
                let first = JSONValue.object(["bridge": .string(bridge.name), "interfaces": .array(names.map { .string($0) }),
                                              "format": .string("pcapng"), "direction": .string(direction.description)])
                return .takeOver(first: first) { [logger = self.logger] conn in
                    Self.streamCapture(conn, engine: engine, bridge: bridge, ports: ports, direction: direction,
                                       filter: filter, options: options, logger: logger)
                }
            }
        }
    }

    /// A port name (in whichever bridge has it), else a bridge name (every attached port).
    static func captureTarget(_ name: String, in engine: Engine) throws -> (Bridge, [PortID]) {
        for b in engine.allBridges { if let id = b.port(named: name) { return (b, [id]) } }
        if let b = engine.bridge(named: name) {
            let ids = b.portTable.ports.map(\.id)
            guard !ids.isEmpty else { throw ControlError(.failed, "bridge '\(name)' has no attached port") }
            return (b, ids)
        }
        throw ControlError(.noSuchPort, "no port or bridge named '\(name)'")
    }

    /// Runs on the connection's thread until the capture is over.
    static func streamCapture(_ conn: ControlConnection, engine: Engine, bridge: Bridge, ports: [PortID],
                              direction: CaptureDirection, filter: String?, options: CaptureOptions, logger: Logger) {
        let fd = conn.fileDescriptor.rawValue
        let session: CaptureSession
        do {
            session = try engine.startCapture(bridge: bridge, ports: ports, direction: direction, filter: filter,
                                              destination: .descriptor(fd), options: options)
        } catch {
            logger.warning("capture refused", metadata: ["error": "\(error)"])
            return
        }
        // The client sends nothing more: end of file (it shut its side: Ctrl-C) or an error
        // means stop. Bytes it sends anyway are read and ignored.
        var scratch = [UInt8](repeating: 0, count: 256)
        while !session.isFinished && !conn.isStopping() {
            guard let revents = try? Syscall.poll(fd, events: Int16(POLLIN), timeout: 200) else { break }
            guard revents != 0 else { continue }
            if revents & Int16(POLLERR | POLLNVAL) != 0 { break }
            // EINTR retried inside; EAGAIN (nothing after all) is a value; end of file or an error ends it.
            guard let r = try? Syscall.receive(fd, &scratch, scratch.count, flags: Int32(MSG_DONTWAIT)) else { break }
            if case .processed(0) = r { break }
        }
        let s = session.stop()
        logger.info("capture ended", metadata: ["ports": "\(session.interfaces.joined(separator: ","))",
                                                "captured": "\(s.captured)", "dropped": "\(s.dropped)",
                                                "error": "\(session.error.map { "\($0)" } ?? "-")"])
    }
}
