// `tapbridge config check FILE`: the daemon's own parser and host validator, offline (no daemon
// needed, nothing changed).
import ArgumentParser
import Daemon
import Foundation

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Check a configuration file.", subcommands: [ConfigCheck.self])
}

struct ConfigCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Parse FILE and check it against this host, without a daemon and without changing anything.",
        discussion: """
            Every problem is listed as FILE: key.path: reason. Exit status 0 when the file would start, 1 otherwise.

            Examples:
              tapbridge config check /etc/tapbridge/tapbridge.toml
              tapbridge config check new.toml --json | jq -r '.issues[].path'
            """)
    @Argument(help: "The TOML configuration file.") var file: String
    @Flag(help: "JSON: {\"ok\": bool, \"file\", \"bridges\", \"ports\", \"issues\": [{path, reason}]}.") var json = false

    struct Report: Codable {
        var ok: Bool, file: String, bridges: Int, ports: Int
        var issues: [Issue]
        struct Issue: Codable { var path: String; var reason: String }
    }

    func run() throws {
        var report = Report(ok: true, file: file, bridges: 0, ports: 0, issues: [])
        // The file's problems and the host's in one pass (a missing parent next to a typo).
        let (parsed, parseIssues) = ConfigParser.loadCollectingIssues(path: file)
        var issues = parseIssues
        if let cfg = parsed {
            report.bridges = cfg.bridges.count
            report.ports = cfg.allPorts.count
            issues = ConfigProblems.all(cfg, parseIssues: parseIssues, host: SystemHost())
        }
        report.ok = issues.isEmpty
        report.issues = issues.map { .init(path: $0.path, reason: $0.reason) }
        if json {
            printJSON(report)
        } else if report.ok {
            print("\(file): ok: \(report.bridges) bridge(s), \(report.ports) port(s)")
        } else {
            for i in report.issues { print(i.path.isEmpty ? "\(file): \(i.reason)" : "\(file): \(i.path): \(i.reason)") }
        }
        if !report.ok { throw ExitCode.failure }
    }
}
