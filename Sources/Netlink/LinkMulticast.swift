// LinkMulticast: a link's IFF_ALLMULTI flag (`ip link set NAME allmulticast on|off`). A macvtap
// hands a multicast frame to its queue only if the group is on its multicast list (the
// kernel's macvlan mc_filter), so a port that must see link-local groups nobody joins on it —
// the spanning tree's 01:80:C2:00:00:00 — needs all-multicast on.
#if canImport(Glibc)
import Glibc
#endif
import CLibmnl
import CTapbridgeShim

extension LinkManager {
    /// Turns IFF_ALLMULTI on or off on link `name`.
    public func setAllMulticast(name: String, _ on: Bool) throws {
        try LinkName.validate(name, operation: .change)
        guard let link = try link(named: name) else { throw NetlinkError(.change, interface: name, errno: ENODEV) }
        do {
            try socket.request(type: nlType(RTM_NEWLINK), flags: Int32(NLM_F_ACK), build: { nlh in
                Self.putInfoHeader(nlh, index: link.index)
                let ifi = mnl_nlmsg_get_payload(nlh)!.assumingMemoryBound(to: ifinfomsg.self)
                ifi.pointee.ifi_change = UInt32(IFF_ALLMULTI.rawValue)
                ifi.pointee.ifi_flags = on ? UInt32(IFF_ALLMULTI.rawValue) : 0
            })
        } catch let e as KernelError {
            throw NetlinkError(.change, interface: name, kind: link.kind ?? "link", errno: e.errno, detail: e.message)
        }
    }
}
