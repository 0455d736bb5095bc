// ConfigProblems: the file's own problems and the host's in one pass, for `config check`,
// `run --check` and `run`: a missing parent interface is reported together with a typo, not
// once the typo is fixed. Host checks run on the configuration as far as it could be read; a
// host problem of a part (a port, a VM attachment, a filter, the control socket) that already
// has a problem of its own in the file is left out, since it may only echo that one.
import Foundation

public enum ConfigProblems {
    /// `parseIssues` (from `ConfigParser.loadCollectingIssues`) followed by what the validator
    /// finds on `host` for `config`, minus host problems of parts the file got wrong.
    public static func all(_ config: DaemonConfig, parseIssues: [ConfigIssue], host: HostInspector) -> [ConfigIssue] {
        var hostIssues: [ConfigIssue] = []
        do { try ConfigValidator.validate(config, host: host) } catch let e as ConfigError {
            hostIssues = e.issues
        } catch {
            hostIssues = [ConfigIssue(file: config.file, path: "", reason: "\(error)")]
        }
        guard !parseIssues.isEmpty else { return hostIssues }
        let faulty = Set(parseIssues.compactMap { part(of: $0.path) })
        return parseIssues + hostIssues.filter { i in part(of: i.path).map { !faulty.contains($0) } ?? true }
    }

    /// The part of the configuration a key path belongs to (`bridges[0].ports[1]`, `vms[2]`,
    /// `bridges[0].filter`, `control`), or nil for keys outside any.
    static func part(of path: String) -> String? {
        let pattern = #"^(bridges\[[0-9]+\]\.ports\[[0-9]+\]|vms\[[0-9]+\]|bridges\[[0-9]+\]\.filter|control)"#
        guard let r = path.range(of: pattern, options: .regularExpression) else { return nil }
        return String(path[r])
    }
}
