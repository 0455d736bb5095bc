// VxlanPort: a `vxlan` port — the kernel's VXLAN device joining this bridge to other hosts,
// read through a passthru macvtap whose lower device is the VXLAN device. Every frame the
// tunnel decapsulates arrives on the macvtap; every frame written to the macvtap is
// encapsulated by the kernel (sent to the remote its FDB names, or to every remote for
// broadcast and unknown unicast). It is a MacvtapPort under the VXLAN device's name and kind,
// so GSO frames cross whole (the kernel segments after encapsulation) and queues and health
// checks are the macvtap's. One port for all remotes: the switch's split horizon (never back
// out of the port a frame came in on) keeps overlay frames out of the overlay.
import Frames
import Tap
import VirtioNet

public final class VxlanPort: Port, @unchecked Sendable {
    /// The VXLAN device's name.
    public let name: String
    /// The passthru macvtap tapbridge reads.
    public let macvtap: MacvtapPort
    public var kind: String { "vxlan" }
    public var settings: PortSettings { macvtap.settings }
    public var framing: Framing { .datagram }
    public var vnetHeaderSize: Int { macvtap.vnetHeaderSize }
    public var maxFrameSize: Int { macvtap.maxFrameSize }
    public var transmitOffloads: VirtioNetOffloads { macvtap.transmitOffloads }
    public var isMultiQueue: Bool { true }

    /// `device`: the passthru macvtap on VXLAN device `vxlan`.
    public init(vxlan: String, macvtap device: MacvtapDevice, settings: PortSettings = PortSettings(),
                offloads: VirtioNetOffloads = .all) {
        name = vxlan
        macvtap = MacvtapPort(device: device, settings: settings, vnetHeader: true, offloads: offloads)
    }

    public func openQueue(_ index: Int) throws -> Int32? { try macvtap.openQueue(index) }
    public func setReceiveOffloads(_ offloads: VirtioNetOffloads) throws { try macvtap.setReceiveOffloads(offloads) }
    public func descriptorsClosed() { macvtap.descriptorsClosed() }
    public func checkAlive() -> Int32 { macvtap.checkAlive() }
    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .remove }
}
