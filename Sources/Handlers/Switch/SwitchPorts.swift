// SwitchPorts: the learning switch's per-port facts in the shape the hot path wants them
// (bitsets and flat arrays indexed by PortID), rebuilt from each PortTable snapshot.
// The engine calls portsChanged on its control thread while workers keep switching, so a
// snapshot is published through a SnapshotPublisher.
import Atomics
import Frames

final class SwitchPorts {
    /// Every attached port.
    let members: PortSet
    let isolated: PortSet
    let hairpin: PortSet
    /// VLAN classification per port: 0 unaware, 1 access, 2 trunk.
    let kind: UnsafeMutablePointer<UInt8>
    /// Access: the PVID. Trunk: the native VLAN (0 = none).
    let untaggedVLAN: UnsafeMutablePointer<UInt16>
    /// Ports that carry each VLAN (index 0: the VLAN-unaware ports).
    let vlanMembers: UnsafeMutablePointer<PortSet>
    /// Trunk ports' allowed lists, for ingress checks: PortSet per VLAN above covers it.
    let table: PortTable
    /// The guards' per-port settings (PortGuards.swift) and the storage they point into.
    let guards: PortGuardFacts
    let guardStorage: PortGuardStorage

    init(_ table: PortTable, guards storage: PortGuardStorage? = nil) {
        self.table = table
        guardStorage = storage ?? PortGuardStorage(table, policies: [:], loopGuard: .init())
        guards = guardStorage.facts
        var members = PortSet(), isolated = PortSet(), hairpin = PortSet()
        kind = .allocate(capacity: PortSet.capacity)
        kind.initialize(repeating: 0, count: PortSet.capacity)
        untaggedVLAN = .allocate(capacity: PortSet.capacity)
        untaggedVLAN.initialize(repeating: 0, count: PortSet.capacity)
        vlanMembers = .allocate(capacity: 4096)
        vlanMembers.initialize(repeating: PortSet(), count: 4096)
        for p in table.ports where Int(p.id.rawValue) < PortSet.capacity {
            let i = Int(p.id.rawValue)
            members.insert(p.id)
            if p.isolated { isolated.insert(p.id) }
            if p.hairpin { hairpin.insert(p.id) }
            switch p.vlan {
            case .unaware:
                vlanMembers[0].insert(p.id)
            case .access(let pvid):
                kind[i] = 1
                untaggedVLAN[i] = pvid
                if pvid >= 1 && pvid <= 4094 { vlanMembers[Int(pvid)].insert(p.id) }
            case .trunk(let allowed, let native):
                kind[i] = 2
                untaggedVLAN[i] = native ?? 0
                for v in allowed.ids { vlanMembers[Int(v)].insert(p.id) }
                if let n = native, n >= 1 && n <= 4094 { vlanMembers[Int(n)].insert(p.id) }
            }
        }
        self.members = members; self.isolated = isolated; self.hairpin = hairpin
    }

    deinit {
        kind.deallocate()
        untaggedVLAN.deallocate()
        vlanMembers.deallocate()
    }
}
