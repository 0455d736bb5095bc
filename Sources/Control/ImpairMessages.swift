// ImpairMessages: the results of `impair.set`, `impair.show` and `impair.clear`
// (docs/control-api.md, docs/impair.md).

/// Each impaired port's settings (in the command's own syntax) and counters.
public struct ImpairResult: Codable, Equatable, Sendable {
    public var impairments: [ImpairInfo]
    /// Set/clear: that the change is runtime only (a reload whose file changed the bridge's impair tables replaces it).
    public var note: String?
    public init(impairments: [ImpairInfo], note: String? = nil) { self.impairments = impairments; self.note = note }
}

public struct ImpairInfo: Codable, Equatable, Sendable {
    public var bridge: String
    public var port: String
    /// The settings as `tapbridge impair PORT ...` words ("" when the port has none).
    public var settings: String
    /// delayed, lost, duplicated, reordered, corrupted, rate_dropped (frames, both directions).
    public var counters: [String: UInt64]
    public init(bridge: String, port: String, settings: String, counters: [String: UInt64]) {
        self.bridge = bridge; self.port = port; self.settings = settings; self.counters = counters
    }
}
