// DaemonLogging: one swift-log bootstrap for `run` and `demo`: one line per event on stderr,
// "TIMESTAMP LEVEL message key=value..." or, with `log-format = "json"`, one JSON object per
// line (for journald/ELK); the level set once at start. Whatever goes into a line is escaped:
// a name or path carrying a newline, a terminal escape or a bidi override (they come from
// configuration files, the control socket and VM peers) can neither split a line into a forged
// one nor reorder what a reader sees.
import Config
import Foundation
import Frames
import Logging

public enum DaemonLogging {
    nonisolated(unsafe) private static var bootstrapped = false

    /// Installs the handler (once per process) and returns the daemon's logger at `level`.
    public static func logger(level: Logger.Level, format: LogFormat = .text, label: String = "tapbridge") -> Logger {
        if !bootstrapped {
            bootstrapped = true
            switch format {
            case .text: LoggingSystem.bootstrap { label in LineLogHandler(label: label) }
            case .json: LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
            }
        }
        var l = Logger(label: label)
        l.logLevel = level
        return l
    }

    /// `s` as it may appear in a log line: control characters and backslashes escaped
    /// (TextSafety.escaped).
    public static func escaped(_ s: String) -> String { TextSafety.escaped(s) }
}

/// A LogHandler keeping its metadata in a plain dictionary (both formats do).
protocol StoredMetadataLogHandler: LogHandler {
    var metadata: Logger.Metadata { get set }
}

extension StoredMetadataLogHandler {
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}

/// Writes `2026-11-24T22:40:01.123Z info port up port=mvt-a bridge=lan` to stderr.
struct LineLogHandler: StoredMetadataLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        FileHandle.standardError.write(Data(Self.line(level: event.level, message: "\(event.message)", metadata: all).utf8))
    }

    static func line(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        let fields = metadata.sorted { $0.key < $1.key }.map { "\(DaemonLogging.escaped($0.key))=\(quote(DaemonLogging.escaped("\($0.value)")))" }
        return ([timestamp(), level.rawValue, DaemonLogging.escaped(message)] + fields).joined(separator: " ") + "\n"
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

/// Writes `{"time":"2026-11-24T22:40:01.123Z","level":"info","message":"port up","label":"tapbridge",
/// "port":"mvt-a","bridge":"lan"}` to stderr: one object per line, metadata as top-level string
/// fields (a key that would shadow time/level/message/label gets a `meta.` prefix).
struct JSONLogHandler: StoredMetadataLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    static let reserved: Set<String> = ["time", "level", "message", "label"]

    func log(event: LogEvent) {
        FileHandle.standardError.write(Data(Self.line(level: event.level, message: "\(event.message)", label: label,
                                                      metadata: metadata.merging(event.metadata ?? [:]) { $1 }).utf8))
    }

    static func line(level: Logger.Level, message: String, label: String, metadata: Logger.Metadata) -> String {
        var out = "{\"time\":\(quote(LineLogHandler.timestamp())),\"level\":\(quote(level.rawValue)),"
            + "\"message\":\(quote(message)),\"label\":\(quote(label))"
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) {
            out += ",\(quote(reserved.contains(k) ? "meta.\(k)" : k)):\(quote("\(v)"))"
        }
        return out + "}\n"
    }

    /// A JSON string literal (RFC 8259 escapes; control characters as \\u00XX).
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where TextSafety.isControl(u): out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
