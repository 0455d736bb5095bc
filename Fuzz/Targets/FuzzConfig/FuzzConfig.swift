// FuzzConfig: a configuration file an operator (or a careless template) wrote: TOML parsing
// (TOMLKit / toml++), ConfigParser's typed reading of every key, its cross-reference checks,
// then ConfigValidator against a fixed fake host (two veths, one namespace), so filter rules
// are parsed and compiled too. Any outcome is fine except a crash, a hang, or a refusal that
// names no problem.
// Input: the file's text (invalid UTF-8 is repaired, as String(contentsOfFile:) would not be
// reached with it).
import Daemon
import FuzzSupport

struct FuzzHost: HostInspector {
    func namespaceExists(_ name: String) -> Bool { name == "ns1" }
    func link(named name: String, netns: String?) -> HostLink? {
        switch (name, netns) {
        case ("eth0", nil): return HostLink(name: "eth0", ifindex: 2, kind: "veth")
        case ("eth1", nil): return HostLink(name: "eth1", ifindex: 3, kind: "veth")
        case ("mv0", nil): return HostLink(name: "mv0", ifindex: 4, kind: "macvtap")
        case ("mv1", "ns1"): return HostLink(name: "mv1", ifindex: 2, kind: "macvtap")
        default: return nil
        }
    }
    func upperLinks(of parent: String) -> [String] { parent == "eth1" ? ["mv0"] : [] }
    func groupExists(_ nameOrNumber: String) -> Bool { nameOrNumber == "0" || nameOrNumber == "root" }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self)
    do {
        let config = try ConfigParser.parse(text, file: "fuzz.toml")
        try ConfigValidator.validate(config, host: FuzzHost())
    } catch let e as ConfigError {
        fuzzCheck(!e.issues.isEmpty, "ConfigError with no issue")
        for issue in e.issues { fuzzCheck(!issue.reason.isEmpty, "issue without a reason at \(issue.path)") }
        _ = e.description
    } catch {
        fuzzCheck(false, "parse/validate threw something other than ConfigError: \(error)")
    }
    return 0
}
