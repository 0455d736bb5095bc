// LinkMulticast: a link's all-multicast flag (IFF_ALLMULTI, `ip link set NAME allmulticast on`).
// A macvtap hands its reader only the multicast groups in its own filter (the groups its own
// stack joined) unless the flag is set; a switch port must see every group — IGMP/MLD reports
// to 224.0.0.22 or ff02::16, and every group's traffic — so the daemon sets it on the
// macvtaps it makes.
import CLibmnl
import Glibc

extension LinkManager {
    /// Sets or clears IFF_ALLMULTI on link `name`.
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
