// `tapbridge run`: the forwarding daemon, from a TOML configuration (docs/config.md).
import ArgumentParser
import Daemon
import Foundation
import Logging

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the forwarding daemon from a TOML configuration.",
        discussion: "Creates the macvtaps the configuration declares, opens them and forwards frames until "
            + "SIGINT/SIGTERM, then deletes exactly the links it created. SIGHUP re-reads the file, adds or "
            + "removes ports and swaps filter rules live. Every key is described in docs/config.md.\n\n"
            + "While it runs, `tapbridge ports|stats|top|fdb|port|filter` talk to it over its control socket "
            + "(default /run/tapbridge/control.sock, root only; see docs/control-api.md).")

    @Option(name: .long, help: "Configuration file (TOML).")
    var config: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (overrides the file).")
    var logLevel: String?

    @Option(name: .long, help: "Datapath worker threads (overrides the file; default: one per core).")
    var workers: Int?

    @Option(name: .long, help: ArgumentHelp("Control socket path (overrides [control] socket; \"\" for none; default /run/tapbridge/control.sock).", valueName: "PATH"))
    var control: String?

    @Flag(name: .long, help: "Validate the configuration against this host, change nothing, and exit.")
    var check = false

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown log level '\(logLevel)' (one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if let workers, !(1...64).contains(workers) { throw ValidationError("--workers must be 1...64") }
    }

    func run() throws {
        var cfg: DaemonConfig
        do {
            cfg = try ConfigParser.load(path: config)
            if let logLevel { cfg.logLevel = Logger.Level(rawValue: logLevel)! }
            if let workers { cfg.workers = workers }
            if let control { cfg.controlSocket = control }
            try ConfigValidator.validate(cfg, host: SystemHost())
        } catch {
            printError("\(error)")
            printError("tapbridge: configuration refused; nothing was created")
            throw ExitCode.failure
        }
        if check {
            let ports = cfg.allPorts
            print("\(config): ok: \(cfg.bridges.count) bridge(s), \(ports.count) port(s), "
                  + "\(ports.filter { $0.port.create != nil }.count) link(s) to create")
            return
        }
        let logger = DaemonLogging.logger(level: cfg.logLevel)
        do {
            let daemon = Daemon(config: cfg, logger: logger, stopSignal: try StopSignal())
            try daemon.run()
        } catch {
            logger.error("failed", metadata: ["error": "\(error)"])
            printError("tapbridge: \(error)")
            throw ExitCode.failure
        }
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
