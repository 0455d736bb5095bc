// FrameLimits: the frame size bounds of a VM port (`max-frame`). The engine's workers judge
// each length prefix with Datapath's StreamPrefix against `maxFrame`.
import Datapath

/// Frame size bounds for a VM port. `maxFrame` defaults to MTU 1500 + 18 (Ethernet header + VLAN tag + FCS room).
public struct FrameLimits: Sendable, Equatable {
    public static let ethernetHeader = StreamPrefix.minimumFrame
    public static let absoluteMax = StreamPrefix.absoluteMaxFrame
    public let maxFrame: Int
    public init(mtu: Int = 1500) { self.init(maxFrame: mtu + 18) }
    public init(maxFrame: Int) { self.maxFrame = min(max(maxFrame, FrameLimits.ethernetHeader), FrameLimits.absoluteMax) }
}
