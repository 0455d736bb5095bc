// LoopGuard: loop protection independent of STP. Two signs of a loop, both seen in the datapath
// without any frame of our own on the wire:
//  - MAC flapping: a MAC moving onto a port more than `movesPerSecond` times within one second
//    (a per-port counter in one-second windows, bumped only when the FDB reports a move);
//  - echo: a broadcast or multicast frame the switch flooded arriving again, through another
//    port, within `echoMilliseconds` (a 1024-slot table of recent flooded frames keyed by a
//    hash of the source MAC and the first 48 bytes after the Ethernet header).
// Either blocks the port the frame came in on: its frames are dropped and it gets no floods
// and no unicast (drop reason `port-blocked`). One block per second at most: the two ends of a
// loop see its frames at the same moment (on two workers), and blocking both would cut the LAN
// off; for a second after a block, further echoes are only dropped, and a loop still there is
// found again after it. The control thread's sweep flushes the port's
// learned entries, logs the block and lifts it after the back-off (`loop-guard-backoff`);
// a loop still there blocks the port again at once. Counted: `guard_loop_move_blocks`,
// `guard_loop_echo_blocks`, `guard_unblocks`, `guard_blocked_port_drops`.
import Atomics
import Frames

extension LearningSwitch {
    /// A MAC moved from `from` onto `port`: count it (and the move rate, with the loop guard on).
    @inline(never)
    func noteMoved(_ mac: MACAddress, vlan: UInt16, from: PortID, to port: PortID, _ g: PortGuardFacts, _ context: HandlerContext) -> Verdict? {
        noteLearned(mac, vlan: vlan, port: port, now: context.now, kind: .moved, from: from)
        guard g.active && g.loopGuard else { return nil }
        let nowMs = ForwardingDatabase.milliseconds(context.now)
        let cell = guards.at(guards.moves, port)
        let v = cell.load(ordering: .relaxed)
        let count: UInt64
        if v == 0 || nowMs &- UInt32(truncatingIfNeeded: v >> 32) >= 1000 {
            cell.store(UInt64(nowMs) << 32 | 1, ordering: .relaxed)
            count = 1
        } else {
            count = cell.wrappingIncrementThenLoad(ordering: .relaxed) & 0xFFFF_FFFF
        }
        guard count > UInt64(g.movesPerSecond), mayBlockForLoop(context.now) else { return nil }
        if guards.block(port, reason: .macMoves, mac: mac, vlan: vlan, now: context.now) {
            guards.counters.add(.loopMoveBlocks, worker: context.worker)
        }
        guards.counters.add(.blockedDrops, worker: context.worker)
        return .drop(.portBlocked)
    }

    /// A flooded broadcast/multicast frame: seen just now through another port? Then a loop.
    @inline(never)
    func checkEcho(_ frame: Frame, _ g: PortGuardFacts, _ context: HandlerContext) -> Verdict? {
        let h = Self.echoHash(frame)
        let cell = UnsafeAtomic<UInt64>(at: guards.echoTable + Int(h & UInt64(PortGuardState.echoSlots - 1)))
        let tag = (h >> 32) | 1
        let port = UInt64(frame.ingress.rawValue & 0xFF)
        let nowMs = UInt64(ForwardingDatabase.milliseconds(context.now)) & 0xFF_FFFF
        let old = cell.load(ordering: .relaxed)
        if old >> 32 == tag, (old >> 24) & 0xFF != port, (nowMs &- old) & 0xFF_FFFF < UInt64(g.echoMilliseconds) {
            if mayBlockForLoop(context.now), guards.block(frame.ingress, reason: .echo, mac: frame.source, vlan: frame.vlan, now: context.now) {
                guards.counters.add(.loopEchoBlocks, worker: context.worker)
            }
            guards.counters.add(.blockedDrops, worker: context.worker)
            return .drop(.portBlocked)
        }
        cell.store(tag << 32 | port << 24 | nowMs, ordering: .relaxed)
        return nil
    }

    /// Whether no loop block happened in the last second (and if so, claims this one).
    @inline(__always)
    func mayBlockForLoop(_ now: UInt64) -> Bool {
        let cell = UnsafeAtomic<UInt64>(at: guards.lastLoopBlock)
        let last = cell.load(ordering: .relaxed)
        guard last == 0 || now &- last >= 1_000_000_000 else { return false }
        return cell.compareExchange(expected: last, desired: max(1, now), ordering: .relaxed).exchanged
    }

    /// Hash of the source MAC and up to 48 bytes after the Ethernet header (tags skipped, so a
    /// frame that left tagged and came back untagged still matches).
    @inline(__always)
    static func echoHash(_ frame: Frame) -> UInt64 {
        let base = UnsafeRawPointer(frame.bytes.baseAddress!)
        var h = frame.source.rawValue &* 0x9E37_79B9_7F4A_7C15
        var off = 12
        while off + 4 <= frame.length, off < 20 {
            let t = UInt16(base.load(fromByteOffset: off, as: UInt8.self)) << 8 | UInt16(base.load(fromByteOffset: off + 1, as: UInt8.self))
            guard t == EtherType.vlan || t == EtherType.qinq else { break }
            off += 4
        }
        let end = min(frame.length, off + 50)
        while off + 8 <= end {
            h = (h ^ base.loadUnaligned(fromByteOffset: off, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 29
            off += 8
        }
        while off < end {
            h = (h ^ UInt64(base.load(fromByteOffset: off, as: UInt8.self))) &* 0x100_0000_01B3
            off += 1
        }
        return h ^ (h >> 31)
    }
}
