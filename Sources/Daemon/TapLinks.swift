// TapLinks: the links behind `tap` and `host` ports, made the same way for the file, reloads and
// `port add`.
// - tap: a persistent tap for a VMM (owner/group from names or ids, IFF_MULTI_QUEUE only when the
//   VMM opens several queues) with addrgenmode none, up, and a passthru macvtap on it (addrgenmode
//   none, up) that tapbridge reads: the host stack stays silent on both, so only the bridge's
//   frames reach the VM. Both are recorded in the ledger by LinkLifecycle.
// - host: a non-persistent tap that tapbridge itself reads (Datapath.TapPort), with the
//   configured MAC, MTU and addresses, up. Its port object holds it; the kernel deletes it when
//   the daemon lets go or dies, so it never needs the ledger.
import Datapath
import Foundation
import Frames
import Glibc
import Netlink
import Tap

enum TapLinks {
    /// Creates tap `name` for a VMM and the passthru macvtap `macvtap` on it; on any failure
    /// deletes what it made. Returns both as the kernel reports them.
    static func createVMTap(name: String, macvtap: String, multiQueue: Bool, user: String?, group: String?,
                            mtu: Int?) throws -> (tap: LinkInfo, macvtap: LinkInfo) {
        var creation = TapCreation(name: name, multiQueue: multiQueue)
        if let user {
            guard let uid = TunDevice.userID(user) else { throw DaemonError("tap '\(name)': no user '\(user)' on this system") }
            creation.owner = uid
        }
        if let group {
            guard let gid = TunDevice.groupID(group) else { throw DaemonError("tap '\(name)': no group '\(group)' on this system") }
            creation.group = gid
        }
        do { try TunDevice.createPersistent(creation) } catch { throw DaemonError("\(error)") }
        do {
            let manager = try LinkManager()
            try manager.disableIPv6AddressGeneration(name: name)
            try manager.set(name: name, up: true, mtu: mtu.map { UInt32($0) })
            try addMacvtap(tap: name, macvtap: macvtap, mtu: mtu)
            guard let t = try manager.link(named: name), let m = try manager.link(named: macvtap) else {
                throw DaemonError("tap '\(name)' or its macvtap '\(macvtap)' vanished while being made")
            }
            return (t, m)
        } catch {
            // Deleting the tap deletes the macvtap on it too.
            _ = try? LinkManager().delete(name: name)
            throw error as? DaemonError ?? DaemonError("tap '\(name)': \(error)")
        }
    }

    /// Makes the passthru macvtap tapbridge reads on tap `tap` (IPv6 address generation off, up).
    static func addMacvtap(tap: String, macvtap: String, mtu: Int?) throws {
        let manager = try LinkManager()
        try manager.create(LinkSpec(kind: .macvtap, parent: tap, name: macvtap, mode: .passthru, mtu: mtu.map { UInt32($0) }))
        do {
            try manager.disableIPv6AddressGeneration(name: macvtap)
            try manager.set(name: macvtap, up: true)
        } catch {
            _ = try? manager.delete(name: macvtap)
            throw error
        }
    }

    /// Whether tap `name` was made with this queue mode, owner and group (sysfs: tun_flags,
    /// owner, group; -1 is "none").
    static func matches(name: String, multiQueue: Bool, user: String?, group: String?) -> Bool {
        func read(_ file: String) -> String? {
            (try? String(contentsOfFile: "/sys/class/net/\(name)/\(file)", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let flagsText = read("tun_flags"), let flags = Int(flagsText.replacingOccurrences(of: "0x", with: ""), radix: 16),
              let owner = read("owner").flatMap({ Int($0) }), let grp = read("group").flatMap({ Int($0) }) else { return false }
        let wantOwner = user.flatMap { TunDevice.userID($0) }.map { Int($0) } ?? -1
        let wantGroup = group.flatMap { TunDevice.groupID($0) }.map { Int($0) } ?? -1
        return (flags & Int(TunDevice.multiQueueFlag) != 0) == multiQueue && owner == wantOwner && grp == wantGroup
    }

    /// The port for a VMM's tap: the passthru macvtap on it, read by its device number.
    static func openVMTap(name: String, macvtap: String, settings: PortSettings) throws -> TapAttachmentPort {
        let manager = try LinkManager()
        guard let tap = try manager.link(named: name) else { throw DaemonError("no tap '\(name)'") }
        guard tap.kind == "tun" else { throw DaemonError("'\(name)' is not a tap (kind \(tap.kind ?? "none"))") }
        guard let link = try manager.link(named: macvtap), link.kind == "macvtap", let dev = link.tapDevice else {
            throw DaemonError("tap '\(name)': no macvtap '\(macvtap)' on it")
        }
        guard link.parentIndex == tap.index, link.mode == .passthru else {
            throw DaemonError("tap '\(name)': '\(macvtap)' is not a passthru macvtap on it")
        }
        let device = MacvtapDevice(name: macvtap, ifindex: link.index, major: dev.major, minor: dev.minor)
        return TapAttachmentPort(tap: name, macvtap: device, settings: settings)
    }

    /// Waits until interface `name` is gone from the daemon's namespace; false after `timeout` s.
    static func waitGone(_ name: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while TunDevice.exists(name) {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// Creates host port `name` (a tap tapbridge reads) with `mac`, `mtu` and `addresses`, up.
    static func createHostPort(name: String, addresses: [String], mtu: Int?, mac: MACAddress?,
                               settings: PortSettings) throws -> TapPort {
        var parsed: [InterfaceAddress] = []
        for a in addresses {
            guard let ia = InterfaceAddress(a) else { throw DaemonError("host port '\(name)': invalid address '\(a)'") }
            parsed.append(ia)
        }
        let port: TapPort
        do { port = try TapPort(creating: name, kind: "host", settings: settings) } catch { throw DaemonError("\(error)") }
        do {
            let manager = try LinkManager()
            if mac != nil || mtu != nil { try manager.set(name: name, address: mac, mtu: mtu.map { UInt32($0) }) }
            for a in parsed { try manager.addAddress(a, to: name) }
            try manager.set(name: name, up: true)
        } catch {
            port.release()
            throw DaemonError("host port '\(name)': \(error)")
        }
        return port
    }
}
