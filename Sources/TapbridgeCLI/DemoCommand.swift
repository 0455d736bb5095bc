// `tapbridge demo`: a self-contained topology in network namespaces, bridged in-process.
import ArgumentParser
import Daemon
import Logging

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Build a demo topology in network namespaces and bridge it.",
        discussion: "Hosts tb-a (198.18.0.1), tb-b (.2) and with --hosts 3 tb-c (.3), each behind a veth whose "
            + "root-namespace end carries a passthru macvtap, are bridged by tapbridge's learning switch. "
            + "Ctrl-C (or SIGTERM, or the end of --duration) removes everything.")

    @Option(help: "Number of hosts (2 or 3).")
    var hosts = 2

    @Option(help: "Stop by itself after this many seconds.")
    var duration: Double?

    @Flag(help: "Ping between all hosts and run a 2 s iperf3, print PASS or FAIL, and exit (1 on FAIL).")
    var selfTest = false

    @Option(help: "Datapath worker threads (default: one per core).")
    var workers: Int?

    @Flag(help: "Open the macvtaps without vnet header and offloads.")
    var noOffloads = false

    @Option(help: "Seconds between counter lines (0: none).")
    var interval: Double = 5

    @Option(help: "Log level of the bridge's log on stderr.")
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Control socket of the demo's daemon, for `tapbridge top --control PATH` and friends (default: /run/tapbridge/tb-demo.sock, after the name prefix; \"\": none).",
                               valueName: "PATH"))
    var control: String?

    @Option(help: ArgumentHelp("Name prefix for namespaces and links.", visibility: .hidden))
    var prefix = "tb"

    func validate() throws {
        guard (2...3).contains(hosts) else { throw ValidationError("--hosts must be 2 or 3") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown log level '\(logLevel)'") }
        guard prefix.count <= 8, !prefix.isEmpty else { throw ValidationError("--prefix must be 1...8 characters") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
    }

    func run() throws {
        var o = DemoOptions()
        o.hosts = hosts
        o.duration = duration
        o.selfTest = selfTest
        o.workers = workers
        o.offloads = !noOffloads
        o.interval = interval
        o.prefix = prefix
        o.controlSocket = control ?? "/run/tapbridge/\(prefix)-demo.sock"
        o.logLevel = Logger.Level(rawValue: logLevel)!
        let ok: Bool
        do {
            ok = try DemoRunner.run(o)
        } catch {
            printError("tapbridge demo: \(error)")
            throw ExitCode.failure
        }
        if !ok { throw ExitCode.failure }
    }
}
