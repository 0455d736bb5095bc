// PartialFrameTimeoutConfigTests: the top-level `partial-frame-timeout` key (seconds a stream VM
// peer may hold a partial frame; EngineConfiguration.partialFrameTimeout): default, value, and
// mistakes refused naming the file and key.
import Testing
@testable import Config

@Suite struct PartialFrameTimeoutConfigTests {
    let bridge = "[[bridges]]\nname = \"lab\"\n[[bridges.ports]]\nname = \"vm0\"\nkind = \"vm\"\npath = \"/tmp/vm0.sock\"\n"

    @Test func defaultAndValue() throws {
        #expect(try ConfigParser.parse(bridge, file: "t.toml").partialFrameTimeout == 5)
        #expect(try ConfigParser.parse("partial-frame-timeout = 0.5\n" + bridge, file: "t.toml").partialFrameTimeout == 0.5)
        #expect(try ConfigParser.parse("partial-frame-timeout = 30\n" + bridge, file: "t.toml").partialFrameTimeout == 30)
    }

    @Test func mistakesNameFileAndKey() {
        #expect(issues("partial-frame-timeout = \"5s\"\n" + bridge)
                == ["t.toml: partial-frame-timeout: expected a number, found string \"5s\""])
        #expect(issues("partial-frame-timeout = 0\n" + bridge)
                == ["t.toml: partial-frame-timeout: 0.0 is out of range 0.1...3600.0"])
        #expect(issues("partial-frame-timeout = 7200\n" + bridge)
                == ["t.toml: partial-frame-timeout: 7200.0 is out of range 0.1...3600.0"])
        #expect(issues("[engine]\npartial-frame-timeout = 1\n" + bridge).first?.hasPrefix("t.toml: engine: unknown key") == true)
    }
}
