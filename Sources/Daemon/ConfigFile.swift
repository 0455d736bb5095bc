// ConfigFile: the daemon's way to read a configuration file: the file read here, the text parsed
// by the Config module with the value checks whose syntax lives in the daemon (the metrics
// endpoint's address). Host checks follow separately (ConfigValidator).
@_exported import Config
import Foundation

extension ValueChecks {
    /// The checks `tapbridge run`, `config check` and reloads use.
    public static let daemon = ValueChecks(metricsAddress: { text, allowRemote in
        do { _ = try MetricsAddress(parsing: text, allowRemote: allowRemote); return nil } catch { return "\(error)" }
    })
}

extension ConfigParser {
    /// Reads and parses `path`. Throws `ConfigError` listing every problem found.
    public static func load(path: String) throws -> DaemonConfig {
        let (config, issues) = loadCollectingIssues(path: path)
        guard let config, issues.isEmpty else { throw ConfigError(issues) }
        return config
    }

    /// `load`, returning the configuration as far as it could be read together with every
    /// problem found, so a check can add the host's problems in the same pass (ConfigProblems).
    /// The configuration is nil only when the file cannot be read or is not TOML.
    public static func loadCollectingIssues(path: String) -> (DaemonConfig?, [ConfigIssue]) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path)
                ? "cannot read the file (\(error.localizedDescription))" : "no such file"
            return (nil, [ConfigIssue(file: path, path: "", reason: reason)])
        }
        return parseCollectingIssues(text, file: path, checks: .daemon)
    }
}
