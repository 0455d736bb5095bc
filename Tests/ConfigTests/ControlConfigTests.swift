// ControlConfigTests: the `[control]` table (socket path, group) is parsed and checked like
// every other key.
import Testing
@testable import Config

@Suite struct ControlConfig {
    let ports = "[[bridges]]\n[[bridges.ports]]\nname = \"m0\"\nparent = \"eth0\"\n"

    @Test func defaultsAndValues() throws {
        let d = try ConfigParser.parse(ports, file: "t.toml")
        #expect(d.controlSocket == "/run/tapbridge/control.sock" && d.controlGroup == nil)
        let c = try ConfigParser.parse("[control]\nsocket = \"/tmp/x.sock\"\ngroup = \"tapbridge\"\n" + ports, file: "t.toml")
        #expect(c.controlSocket == "/tmp/x.sock" && c.controlGroup == "tapbridge")
        let n = try ConfigParser.parse("[control]\nsocket = \"\"\ngroup = 1001\n" + ports, file: "t.toml")
        #expect(n.controlSocket == "" && n.controlGroup == "1001")
    }

    @Test func mistakesAreRefused() {
        #expect(issues("[control]\nsocket = \"rel.sock\"\n" + ports) == ["t.toml: control.socket: must be an absolute path (or \"\" for no control socket)"])
        #expect(issues("[control]\ngroup = true\n" + ports) == ["t.toml: control.group: expected a group name or number, found boolean true"])
        #expect(issues("[control]\nsockt = \"/x\"\n" + ports) == ["t.toml: control.sockt: unknown key (did you mean 'socket'?)"])
    }
}
