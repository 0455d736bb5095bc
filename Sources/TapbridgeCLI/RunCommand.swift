// `tapbridge run`: the forwarding daemon, from a TOML configuration (docs/config.md).
import ArgumentParser
import Daemon
import Foundation
import Frames
import Logging

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the forwarding daemon from a TOML configuration.",
        discussion: "Creates the macvtaps the configuration declares, opens them and forwards frames until "
            + "SIGINT/SIGTERM, then deletes exactly the links it created. SIGHUP re-reads the file, adds or "
            + "removes ports and swaps filter rules live. Every key is described in docs/config.md. "
            + "Links it creates are recorded in a ledger in the state directory: after a crash the next start "
            + "reclaims the ones still configured and deletes the rest. Under systemd (Type=notify) it reports "
            + "READY/RELOADING/STOPPING and pings the watchdog; see docs/operations.md and tools/tapbridge.service.\n\n"
            + "While it runs, `tapbridge ports|stats|top|fdb|port|filter|capture` talk to it over its control socket "
            + "(default /run/tapbridge/control.sock, root only; see docs/control-api.md).")

    @Option(name: .long, help: "Configuration file (TOML).")
    var config: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (overrides the file).")
    var logLevel: String?

    @Option(name: .long, help: "Datapath worker threads (overrides the file; default: one per core).")
    var workers: Int?

    @Option(name: .long, help: ArgumentHelp("Control socket path (overrides [control] socket; \"\" for none; default /run/tapbridge/control.sock).", valueName: "PATH"))
    var control: String?

    @Option(name: .long, help: "Log format: text (one line per event) or json (one object per line, for journald/ELK).")
    var logFormat: String?

    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://ADDR/metrics (overrides the file).",
                                            valueName: "ADDR"))
    var metrics: String?

    @Flag(name: .long, help: "Allow --metrics on a non-loopback address (the endpoint has no authentication).")
    var metricsAllowRemote = false

    @Option(name: .long, help: ArgumentHelp("Directory of the crash-recovery ledger (default /run/tapbridge).", valueName: "DIR"))
    var stateDir: String?

    @Flag(name: .long, help: "Check the configuration and this host (kernel, io_uring, capabilities), print a report, change nothing, and exit 0 (ok) or 1.")
    var check = false

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown log level '\(logLevel)' (one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if let workers, !(1...64).contains(workers) { throw ValidationError("--workers must be 1...64") }
        if let logFormat, LogFormat(rawValue: logFormat) == nil { throw ValidationError("unknown log format '\(logFormat)' (one of: text, json)") }
        if let metrics {
            do { _ = try MetricsAddress(parsing: metrics, allowRemote: metricsAllowRemote) } catch {
                throw ValidationError("--metrics \(error)")
            }
        }
        if let stateDir, !stateDir.hasPrefix("/") { throw ValidationError("--state-dir must be an absolute path") }
        // The same rule as for the file's paths: no control characters (they would reach the log).
        for (option, value) in [("--config", config), ("--state-dir", stateDir), ("--control", control)] {
            if let value, let why = TextSafety.controlProblem(value, what: option) { throw ValidationError(why) }
        }
    }

    func run() throws {
        if check { runCheck() }
        var cfg: DaemonConfig
        do {
            let (parsed, parseIssues) = loadConfigCollectingIssues()
            guard let parsed else { throw ConfigError(parseIssues) }
            cfg = parsed
            try LinkLedger.checkBeforeStart(stateDirectory: cfg.stateDirectory)
            // The file's problems and the host's, all in one report.
            let issues = ConfigProblems.all(cfg, parseIssues: parseIssues, host: RecoveringHost(stateDirectory: cfg.stateDirectory))
            if !issues.isEmpty { throw ConfigError(issues) }
        } catch {
            printError("\(error)")
            printError("tapbridge: configuration refused; nothing was created")
            throw ExitCode.failure
        }
        let logger = DaemonLogging.logger(level: cfg.logLevel, format: cfg.logFormat)
        do {
            let daemon = Daemon(config: cfg, logger: logger, stopSignal: try StopSignal())
            try daemon.run()
        } catch {
            logger.error("failed", metadata: ["error": "\(error)"])
            printError("tapbridge: \(error)")
            throw ExitCode.failure
        }
    }

    /// The file with the command line's overrides applied.
    func loadConfig() throws -> DaemonConfig {
        let (cfg, issues) = loadConfigCollectingIssues()
        guard let cfg, issues.isEmpty else { throw ConfigError(issues) }
        return cfg
    }

    /// The file as far as it could be read, with the overrides applied, and its problems.
    func loadConfigCollectingIssues() -> (DaemonConfig?, [ConfigIssue]) {
        let (parsed, issues) = ConfigParser.loadCollectingIssues(path: config)
        guard var cfg = parsed else { return (nil, issues) }
        if let logLevel { cfg.logLevel = Logger.Level(rawValue: logLevel)! }
        if let logFormat { cfg.logFormat = LogFormat(rawValue: logFormat)! }
        if let workers { cfg.workers = workers }
        if let metrics { cfg.metrics = metrics }
        if metricsAllowRemote { cfg.metricsAllowRemote = true }
        if let stateDir { cfg.stateDirectory = stateDir }
        if let control { cfg.controlSocket = control }
        return (cfg, issues)
    }

    /// `--check`: the report on stdout, exit 0 if nothing failed.
    func runCheck() -> Never {
        let (cfg, issues) = loadConfigCollectingIssues()
        let report = HostCheck.run(file: config, config: cfg, parseError: cfg == nil ? ConfigError(issues) : nil, parseIssues: issues)
        print(report.text)
        let fails = report.lines.filter { $0.status == .fail }.count
        print(report.passed ? "\(config): ok (nothing was changed)" : "\(config): \(fails) check(s) failed (nothing was changed)")
        Foundation.exit(report.passed ? 0 : 1)
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
