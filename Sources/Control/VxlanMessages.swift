// VxlanMessages: what `ports` reports of a vxlan port (PortStatus.vxlan): the tunnel's settings
// and the remotes the kernel's VXLAN FDB floods to now.
public struct VxlanStatus: Codable, Equatable, Sendable {
    public var vni: UInt32
    public var local: String
    public var dstport: Int
    public var underlay: String
    /// The passthru macvtap tapbridge reads.
    public var macvtap: String
    /// The configured remotes: "198.19.0.2,198.19.0.3", "group 239.1.1.1" or "external".
    public var remotes: String
    public var learning: Bool
    /// Destinations of the all-zeros (head-end replication) entries in the kernel's FDB; nil if unreadable.
    public var floodRemotes: [String]?
    public var mtu: Int?
    public init(vni: UInt32, local: String, dstport: Int, underlay: String, macvtap: String, remotes: String,
                learning: Bool, floodRemotes: [String]?, mtu: Int?) {
        self.vni = vni; self.local = local; self.dstport = dstport; self.underlay = underlay; self.macvtap = macvtap
        self.remotes = remotes; self.learning = learning; self.floodRemotes = floodRemotes; self.mtu = mtu
    }
}

extension PortStatus {
    /// This status with its vxlan part set.
    public func with(vxlan: VxlanStatus?) -> PortStatus {
        var s = self
        s.vxlan = vxlan
        return s
    }
}

extension PortStats {
    /// These counters with a vxlan port's tunnel summary set.
    public func with(tunnel: String?) -> PortStats {
        var s = self
        s.tunnel = tunnel
        return s
    }
}
