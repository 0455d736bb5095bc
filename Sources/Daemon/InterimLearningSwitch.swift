// InterimLearningSwitch: a small VLAN-aware learning switch so `run` and `demo` forward as a
// switch while the Handlers module has no LearningSwitch yet. INTERIM: HandlerFactory prefers
// the Handlers module's LearningSwitch once it exists; then delete this file.
//
// FDB keyed by (VLAN, MAC) in a dictionary reserved at its bound, so the steady state does not
// allocate; the oldest learned entry is evicted when full. Shared by all workers behind one
// mutex held for a lookup and an insert (short; a lock-free FDB is the Handlers module's job).
import Foundation
import Frames

final class InterimLearningSwitch: FrameHandler, @unchecked Sendable {
    let name = "learning-switch"
    let config: LearningSwitchConfig
    private let agingNanoseconds: UInt64

    private struct Entry {
        var port: PortID
        var lastSeen: UInt64
        var isStatic: Bool
    }

    private let lock = NSLock()
    private var fdb: [UInt64: Entry]
    /// Learned keys in insertion order (a ring), for evicting the oldest when full.
    private var order: [UInt64]
    private var orderHead = 0, orderCount = 0
    // Per-port facts, indexed by PortID, replaced by portsChanged.
    private var vlanModes = [VLANMode](repeating: .unaware, count: PortSet.capacity)
    private var members = PortSet()
    private var isolated = PortSet()
    private var hairpin = PortSet()
    // Counters (under the lock).
    private var learned: UInt64 = 0, moves: UInt64 = 0, evictions: UInt64 = 0, aged: UInt64 = 0
    private var floods: UInt64 = 0, unicasts: UInt64 = 0

    init(_ config: LearningSwitchConfig) {
        self.config = config
        agingNanoseconds = UInt64(config.agingSeconds * 1e9)
        fdb = Dictionary(minimumCapacity: config.capacity + config.staticEntries.count + 1)
        order = [UInt64](repeating: 0, count: config.capacity)
    }

    @inline(__always) private static func key(_ mac: MACAddress, _ vlan: UInt16) -> UInt64 {
        mac.rawValue | UInt64(vlan) << 48
    }

    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        let ingress = frame.ingress
        let i = Int(ingress.rawValue)
        guard i < PortSet.capacity else { return .drop(.malformed) }
        // 802.1Q classification by the ingress port's mode.
        var vlan: UInt16 = 0
        switch vlanModes[i] {
        case .unaware:
            break
        case .access(let pvid):
            if frame.taggedVLAN != nil { return .drop(.vlan) }
            vlan = pvid
        case .trunk(let allowed, let native):
            if let v = frame.taggedVLAN {
                guard allowed.contains(v) || v == native else { return .drop(.vlan) }
                vlan = v
            } else if let n = native {
                vlan = n
            } else {
                return .drop(.vlan)
            }
        }
        frame.vlan = vlan
        let src = frame.source, dst = frame.destination

        lock.lock()
        if src.isUnicast && src != .zero { learn(Self.key(src, vlan), port: ingress, now: context.now) }
        var target: PortID?
        if dst.isUnicast, let e = fdb[Self.key(dst, vlan)], members.contains(e.port) {
            if e.isStatic || context.now &- e.lastSeen < agingNanoseconds { target = e.port }
        }
        if target != nil { unicasts &+= 1 } else { floods &+= 1 }
        lock.unlock()

        if let p = target {
            if p == ingress { return hairpin.contains(p) ? .forward(p) : .drop(.loop) }
            if isolated.contains(ingress) && isolated.contains(p) { return .drop(.isolated) }
            return .forward(p)
        }
        var out = PortSet()
        let ingressIsolated = isolated.contains(ingress)
        for p in members where p != ingress {
            if ingressIsolated && isolated.contains(p) { continue }
            if vlan != 0 && !Self.carries(vlanModes[Int(p.rawValue)], vlan) { continue }
            out.insert(p)
        }
        return out.isEmpty ? .drop(.noDestination) : .forwardSet(out)
    }

    @inline(__always) private static func carries(_ mode: VLANMode, _ vlan: UInt16) -> Bool {
        switch mode {
        case .unaware: return true
        case .access(let pvid): return pvid == vlan
        case .trunk(let allowed, let native): return allowed.contains(vlan) || native == vlan
        }
    }

    /// Under the lock.
    private func learn(_ k: UInt64, port: PortID, now: UInt64) {
        if var e = fdb[k] {
            if e.isStatic { return }
            if e.port != port { moves &+= 1; e.port = port }
            e.lastSeen = now
            fdb[k] = e
            return
        }
        guard config.capacity > 0 else { return }
        if orderCount == config.capacity {
            // Evict the oldest learned entry still present (aged ones may already be gone).
            while orderCount > 0 {
                let old = order[orderHead]
                orderHead = (orderHead + 1) % config.capacity
                orderCount -= 1
                if let e = fdb[old], !e.isStatic { fdb[old] = nil; evictions &+= 1; break }
            }
        }
        fdb[k] = Entry(port: port, lastSeen: now, isStatic: false)
        order[(orderHead + orderCount) % config.capacity] = k
        orderCount += 1
        learned &+= 1
    }

    /// Forgets learned entries not seen for the aging time. Called from the control thread.
    func sweep(now: UInt64) {
        lock.lock(); defer { lock.unlock() }
        let stale = fdb.filter { !$0.value.isStatic && now &- $0.value.lastSeen >= agingNanoseconds }.map(\.key)
        for k in stale { fdb[k] = nil }
        aged &+= UInt64(stale.count)
        compactOrder()
    }

    /// Drops keys of entries that are gone from the eviction ring (keeps it exact after sweeps).
    private func compactOrder() {
        var kept: [UInt64] = []
        kept.reserveCapacity(orderCount)
        for j in 0..<orderCount {
            let k = order[(orderHead + j) % config.capacity]
            if let e = fdb[k], !e.isStatic { kept.append(k) }
        }
        for (j, k) in kept.enumerated() { order[j] = k }
        orderHead = 0
        orderCount = kept.count
    }

    func portsChanged(_ ports: PortTable) {
        var modes = [VLANMode](repeating: .unaware, count: PortSet.capacity)
        var iso = PortSet(), hp = PortSet()
        for p in ports.ports {
            modes[Int(p.id.rawValue)] = p.vlan
            if p.isolated { iso.insert(p.id) }
            if p.hairpin { hp.insert(p.id) }
        }
        lock.lock(); defer { lock.unlock() }
        vlanModes = modes
        members = ports.members
        isolated = iso
        hairpin = hp
        // Forget what was learned on ports that are gone; (re)pin static entries.
        let gone = fdb.filter { !ports.members.contains($0.value.port) }.map(\.key)
        for k in gone { fdb[k] = nil }
        for s in config.staticEntries {
            if let p = ports.port(named: s.port) {
                fdb[Self.key(s.mac, s.vlan)] = Entry(port: p.id, lastSeen: 0, isStatic: true)
            }
        }
        compactOrder()
    }

    func counters() -> [HandlerCounter] {
        lock.lock(); defer { lock.unlock() }
        return [HandlerCounter("fdb-entries", UInt64(fdb.count)), HandlerCounter("fdb-learned", learned),
                HandlerCounter("fdb-moves", moves), HandlerCounter("fdb-evictions", evictions),
                HandlerCounter("fdb-aged", aged), HandlerCounter("flooded", floods),
                HandlerCounter("unicast", unicasts)]
    }
}
