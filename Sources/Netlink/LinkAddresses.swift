// LinkAddresses: the layer-3 side of links the daemon makes for the host (a `host` port's
// addresses) and the switch-off of the kernel's own IPv6 on links that must stay pure layer 2
// (a `tap` port's tap and its macvtap: whatever the host stack sends there would reach the VM).
#if canImport(Glibc)
import Glibc
#endif
import CLibmnl
import CTapbridgeShim

/// An interface address with its prefix length ("198.18.0.1/24", "2001:db8::1/64").
public struct InterfaceAddress: Sendable, Equatable, CustomStringConvertible {
    public var family: Int32
    /// 4 or 16 bytes, network order.
    public var bytes: [UInt8]
    public var prefixLength: UInt8

    /// Parses "ADDRESS/PREFIX" (the prefix may be left out: /32 or /128). nil if malformed.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, parts[0].utf8.count < 64 else { return nil }
        let host = String(parts[0])
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            family = AF_INET
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            family = AF_INET6
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else { return nil }
        let maxPrefix = family == AF_INET ? 32 : 128
        if parts.count == 2 {
            guard let p = Int(parts[1]), p >= 0, p <= maxPrefix, !parts[1].hasPrefix("+") else { return nil }
            prefixLength = UInt8(p)
        } else { prefixLength = UInt8(maxPrefix) }
    }

    public var description: String {
        var out = [CChar](repeating: 0, count: 64)
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &out, 64) }
        return String(cString: out) + "/\(prefixLength)"
    }
}

extension LinkManager {
    /// Adds `address` to link `name` (RTM_NEWADDR; an address already there is an error).
    public func addAddress(_ address: InterfaceAddress, to name: String) throws {
        guard let link = try link(named: name) else { throw NetlinkError(.change, interface: name, errno: ENODEV) }
        do {
            try socket.request(type: nlType(RTM_NEWADDR), flags: Int32(NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK), build: { nlh in
                let raw = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ifaddrmsg>.size)!
                let ifa = raw.assumingMemoryBound(to: ifaddrmsg.self)
                ifa.pointee.ifa_family = UInt8(address.family)
                ifa.pointee.ifa_prefixlen = address.prefixLength
                ifa.pointee.ifa_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
                ifa.pointee.ifa_index = UInt32(bitPattern: link.index)
                address.bytes.withUnsafeBytes { b in
                    mnl_attr_put(nlh, nlType(IFA_LOCAL), b.count, b.baseAddress)
                    mnl_attr_put(nlh, nlType(IFA_ADDRESS), b.count, b.baseAddress)
                }
            })
        } catch let e as KernelError {
            throw NetlinkError(.change, interface: name, kind: link.kind ?? "link", errno: e.errno,
                               detail: "add address \(address)" + (e.message.map { ": \($0)" } ?? ""))
        }
    }

    /// Sets link `name`'s IPv6 address generation to none (`ip link set NAME addrgenmode none`):
    /// no link-local address, hence no ND or MLD from the host stack on it. Set it before the
    /// link goes up.
    public func disableIPv6AddressGeneration(name: String) throws {
        guard let link = try link(named: name) else { throw NetlinkError(.change, interface: name, errno: ENODEV) }
        do {
            try socket.request(type: nlType(RTM_NEWLINK), flags: Int32(NLM_F_ACK), build: { nlh in
                Self.putInfoHeader(nlh, index: link.index)
                let spec = mnl_attr_nest_start(nlh, nlType(IFLA_AF_SPEC))
                let inet6 = mnl_attr_nest_start(nlh, nlType(AF_INET6))
                mnl_attr_put_u8(nlh, nlType(IFLA_INET6_ADDR_GEN_MODE), UInt8(IN6_ADDR_GEN_MODE_NONE.rawValue))
                mnl_attr_nest_end(nlh, inet6)
                mnl_attr_nest_end(nlh, spec)
            })
        } catch let e as KernelError {
            throw NetlinkError(.change, interface: name, kind: link.kind ?? "link", errno: e.errno,
                               detail: "addrgenmode none" + (e.message.map { ": \($0)" } ?? ""))
        }
    }
}
