// DaemonLogging: one swift-log bootstrap for `run` and `demo`: one line per event on stderr,
// "TIMESTAMP LEVEL message key=value...", the level set once at start.
import Foundation
import Logging

public enum DaemonLogging {
    nonisolated(unsafe) private static var bootstrapped = false

    /// Installs the handler (once per process) and returns the daemon's logger at `level`.
    public static func logger(level: Logger.Level, label: String = "tapbridge") -> Logger {
        if !bootstrapped {
            bootstrapped = true
            LoggingSystem.bootstrap { label in LineLogHandler(label: label) }
        }
        var l = Logger(label: label)
        l.logLevel = level
        return l
    }
}

/// Writes `2026-11-24T22:40:01.123Z info port up port=mvt-a bridge=lan` to stderr.
struct LineLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quote("\($0.value)"))" }
        let line = ([Self.timestamp(), event.level.rawValue, "\(event.message)"] + fields).joined(separator: " ") + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func quote(_ s: String) -> String {
        s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) ? "\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" : s
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday,
                      tmv.tm_hour, tmv.tm_min, tmv.tm_sec, Int(ts.tv_nsec / 1_000_000))
    }
}
