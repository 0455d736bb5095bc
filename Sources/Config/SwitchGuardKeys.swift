// SwitchGuardKeys: the learning switch's guard keys. Per port, in a `[[bridges.ports]]` table:
// `max-macs`, `max-macs-action`, `flood`, `mcast-flood`, `bcast-flood`, `storm-broadcast`,
// `storm-multicast`. Per bridge, in `[bridges.learning-switch]`: `loop-guard`,
// `loop-guard-moves`, `loop-guard-echo`, `block-seconds`. The checks are in Handlers
// (PortGuards.swift, PortSecurity.swift, FloodControl.swift, LoopGuard.swift).
import Frames
import Handlers

extension ConfigParser {
    /// A port table's guard keys (absent keys: the Linux bridge's defaults, no limits).
    static func parseSwitchGuardKeys(_ r: inout KeyReader) -> LearningSwitch.PortPolicy {
        var p = LearningSwitch.PortPolicy()
        if let n = r.int("max-macs", in: 0...(1 << 24)) { p.maxMACs = n }
        if let a = r.string("max-macs-action") {
            if let action = LearningSwitch.PortPolicy.LimitAction(rawValue: a) { p.limitAction = action } else {
                r.fail("max-macs-action", "must be 'drop' or 'block', not '\(a)'")
            }
        }
        if let f = r.bool("flood") { p.flood = f }
        if let f = r.bool("mcast-flood") { p.multicastFlood = f }
        if let f = r.bool("bcast-flood") { p.broadcastFlood = f }
        if let s = r.number("storm-broadcast", in: 0...100_000_000) { p.stormBroadcast = s }
        if let s = r.number("storm-multicast", in: 0...100_000_000) { p.stormMulticast = s }
        return p
    }
}

extension BundledHandlers {
    static func parseLoopGuardKeys(_ keys: inout KeyReader, into c: inout LearningSwitchConfig) {
        if let on = keys.bool("loop-guard") { c.loopGuard.enabled = on }
        if let n = keys.int("loop-guard-moves", in: 1...1_000_000) { c.loopGuard.movesPerSecond = n }
        if let e = keys.bool("loop-guard-echo") { c.loopGuard.echo = e }
        if let s = keys.number("block-seconds", in: 1...86_400) { c.blockSeconds = s }
    }
}

extension BundledHandlers {
    /// SIGHUP: the loop guard keys apply at once; the FDB's own keys need a restart.
    static func reloadLearningSwitch(_ sw: LearningSwitch, _ new: LearningSwitchConfig, _ old: LearningSwitchConfig) -> [String] {
        if new.loopGuard != old.loopGuard || new.blockSeconds != old.blockSeconds {
            sw.setLoopGuard(new.loopGuard, blockSeconds: new.blockSeconds)
        }
        var rest = new
        rest.loopGuard = old.loopGuard
        rest.blockSeconds = old.blockSeconds
        return rest == old ? [] : ["learning-switch aging/capacity/max-static/static changes not applied (restart needed)"]
    }
}

extension LearningSwitch.Configuration {
    /// The configuration with the guard settings of `c` and of `bridge`'s ports.
    func withGuards(_ c: LearningSwitchConfig, _ bridge: BridgeConfig) -> Self {
        var s = self
        s.loopGuard = c.loopGuard
        s.blockSeconds = c.blockSeconds
        for p in bridge.ports where !p.switchGuards.isDefault { s.portPolicies[p.name] = p.switchGuards }
        return s
    }
}
