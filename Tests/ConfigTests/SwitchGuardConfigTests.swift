// The learning switch's guard keys: per port (`max-macs`, `max-macs-action`, `flood`,
// `mcast-flood`, `bcast-flood`, `storm-broadcast`, `storm-multicast`) and per bridge
// (`loop-guard`, `loop-guard-moves`, `loop-guard-echo`, `block-seconds`), and their errors.
import Testing
import Frames
@testable import Handlers
@testable import Config

@Suite struct SwitchGuardConfigTests {
    @Test func keysAreRead() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            name = "lan"
            [bridges.learning-switch]
            loop-guard = true
            loop-guard-moves = 20
            loop-guard-echo = false
            block-seconds = 5
            [[bridges.ports]]
            name = "up"
            parent = "eth0"
            max-macs = 4
            max-macs-action = "block"
            flood = false
            mcast-flood = false
            bcast-flood = false
            storm-broadcast = 100
            storm-multicast = 1000.5
            [[bridges.ports]]
            name = "other"
            parent = "eth1"
            """, file: "t.toml")
        let p = c.bridges[0].ports[0].switchGuards
        #expect(p.maxMACs == 4 && p.limitAction == .block && !p.flood && !p.multicastFlood && !p.broadcastFlood)
        #expect(p.stormBroadcast == 100 && p.stormMulticast == 1000.5)
        #expect(c.bridges[0].ports[1].switchGuards.isDefault)
        let ls = try #require(c.bridges[0].learningSwitch)
        #expect(ls.loopGuard == .init(enabled: true, movesPerSecond: 20, echo: false) && ls.blockSeconds == 5)
    }

    @Test func mistakesNameTheKey() {
        let text = """
            [[bridges]]
            name = "lan"
            [bridges.learning-switch]
            loop-guard-moves = 0
            [[bridges.ports]]
            name = "up"
            parent = "eth0"
            max-macs = -1
            max-macs-action = "shutdown"
            flood = "no"
            """
        let found = issues(text)
        #expect(found.contains { $0.hasPrefix("t.toml: bridges[0].learning-switch.loop-guard-moves:") })
        #expect(found.contains { $0.hasPrefix("t.toml: bridges[0].ports[0].max-macs:") })
        #expect(found.contains("t.toml: bridges[0].ports[0].max-macs-action: must be 'drop' or 'block', not 'shutdown'"))
        #expect(found.contains { $0.hasPrefix("t.toml: bridges[0].ports[0].flood:") })
    }

    @Test func reloadAppliesTheLoopGuardAndNamesWhatNeedsARestart() {
        let sw = LearningSwitch()
        var old = LearningSwitchConfig(), new = old
        new.loopGuard = .init(enabled: true, movesPerSecond: 5)
        new.blockSeconds = 2
        #expect(BundledHandlers.reloadLearningSwitch(sw, new, old).isEmpty)
        #expect(sw.guardControl.loopGuard.enabled && sw.guardControl.backoffNanoseconds == 2_000_000_000)
        old = new
        new.agingSeconds = 10
        #expect(BundledHandlers.reloadLearningSwitch(sw, new, old) == ["learning-switch aging/capacity/max-static/static changes not applied (restart needed)"])
    }
}
