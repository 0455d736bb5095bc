// FloodControl: which ports a flood may leave by, and storm control. Per port, like the Linux
// bridge's `flood`, `mcast_flood` and `bcast_flood` flags: a port with one switched off does not
// get unknown unicast, multicast or broadcast floods (known unicast and static entries still
// reach it). Storm control caps the broadcast and multicast frames a port may send into the
// switch per second (a shared token bucket per port and kind, TokenBucket from the filter);
// the excess is dropped and counted (`guard_storm_broadcast_drops`, `..._multicast_drops`).
// Blocked ports (LoopGuard, PortSecurity) get no flood either.
import Frames

extension LearningSwitch {
    /// Ingress guards (guards active): a blocked port's frames, and storms. nil: go on.
    @inline(__always)
    func guardIngress(_ frame: inout Frame, _ g: PortGuardFacts, _ context: HandlerContext) -> Verdict? {
        let ingress = frame.ingress
        if guards.isBlocked(ingress) {
            guards.counters.add(.blockedDrops, worker: context.worker)
            return .drop(.portBlocked)
        }
        let dst = frame.destination
        if dst.isMulticast && g.stormPorts.contains(ingress) {
            let broadcast = dst.isBroadcast
            if let bucket = g.storm[(broadcast ? 0 : PortSet.capacity) + Int(ingress.rawValue & 0xFF)],
               !bucket._withUnsafeGuaranteedRef({ $0.take(bytes: frame.length, now: context.now) }) {
                guards.counters.add(broadcast ? .stormBroadcastDrops : .stormMulticastDrops, worker: context.worker)
                return .drop(.rateLimited)
            }
        }
        return nil
    }

    /// The flood set after the flood switches and blocked ports; may find a loop (echo). nil: go on.
    @inline(__always)
    func guardFlood(_ set: inout PortSet, _ frame: Frame, _ g: PortGuardFacts, _ context: HandlerContext) -> Verdict? {
        let dst = frame.destination
        if dst.isBroadcast {
            set = set.subtracting(g.noBroadcastFlood)
        } else if dst.isMulticast {
            set = set.subtracting(g.noMulticastFlood)
        } else {
            set = set.subtracting(g.noFlood)
        }
        set = set.subtracting(guards.blocked)
        if g.echo && dst.isMulticast, let v = checkEcho(frame, g, context) { return v }
        return nil
    }

    /// Egress guard for known unicast: a blocked port gets nothing.
    @inline(__always)
    func blockedEgress(_ context: HandlerContext) -> Verdict {
        guards.counters.add(.blockedDrops, worker: context.worker)
        return .drop(.portBlocked)
    }
}
