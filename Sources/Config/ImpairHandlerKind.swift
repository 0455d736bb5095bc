// ImpairHandlerKind: the `impair` handler kind (`pipeline = ["impair", "learning-switch"]` and
// its `[[bridges.impair.ports]]` tables). Each table's keys are the words of the control
// command (`delay = "80ms"` is `delay 80ms`), read by the one parser in
// Handlers/Impair/ImpairSyntax.swift, so file and socket accept and refuse the same things.
import Frames
import Handlers

/// One port's impairment as the file gives it.
public struct ImpairPortConfig: Equatable, Sendable {
    public var port: String
    public var spec: ImpairSpec
    public init(port: String, spec: ImpairSpec) { self.port = port; self.spec = spec }
}

/// `[bridges.impair]`: the impaired ports of a bridge.
public struct ImpairConfig: HandlerSettings, Equatable {
    public var ports: [ImpairPortConfig] = []
    public var path: String = ""
    public init() {}
    /// Specs per port name.
    public var specs: [String: ImpairSpec] {
        Dictionary(ports.map { ($0.port, $0.spec) }, uniquingKeysWith: { _, last in last })
    }
}

enum ImpairHandlerKind {
    static let kind = HandlerKind(
        name: "impair",
        parse: { keys -> ImpairConfig in
            var c = ImpairConfig()
            c.path = keys.path
            for (i, var t) in (keys.tables("ports") ?? []).enumerated() {
                let name = t.string("port", required: true)
                var words: [String] = []
                for key in ImpairSpec.keywords {
                    guard let v = t.value(key) else { continue }
                    if let s = v.string {
                        guard let ok = t.refusingControls(s, key) else { continue }
                        words.append(key)
                        words += ok.split(separator: " ").map(String.init)
                    } else if let n = v.int {
                        words += [key, String(n)]
                    } else {
                        t.fail(key, "expected a string (like \"80ms\") or an integer, found \(KeyReader.describe(v))")
                    }
                }
                t.finish()
                do {
                    let spec = try ImpairSpec(words: words)
                    if let name { c.ports.append(ImpairPortConfig(port: name, spec: spec)) }
                } catch {
                    keys.fail("ports[\(i)]", "\(error)")
                }
            }
            return c
        },
        check: { c, setup, issues in
            var seen: Set<String> = []
            for (i, p) in c.ports.enumerated() {
                if !setup.bridge.ports.contains(where: { $0.name == p.port }) {
                    issues.add("\(setup.path).ports[\(i)].port", "'\(p.port)' is not a port of bridge '\(setup.bridge.name)'")
                }
                if !seen.insert(p.port).inserted {
                    issues.add("\(setup.path).ports[\(i)].port", "port '\(p.port)' is impaired twice (one table per port)")
                }
            }
        },
        make: { c, setup in FrameImpairer(name: "\(setup.bridge.name)-impair", ports: c.specs) },
        reload: { impairer, new, _, _ in
            impairer.replaceAll(new.specs)
            return []
        })
}
