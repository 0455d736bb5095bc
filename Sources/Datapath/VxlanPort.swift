// VxlanPort: a `vxlan` port — the kernel's VXLAN device joining this bridge to other hosts,
// read through a passthru macvtap whose lower device is the VXLAN device. Every frame the
// tunnel decapsulates arrives on the macvtap; every frame written to the macvtap is
// encapsulated by the kernel (sent to the remote its FDB names, or to every remote for
// broadcast and unknown unicast). It is a MacvtapPort under the VXLAN device's name and kind,
// so GSO frames cross whole (the kernel segments after encapsulation) and queues and health
// checks are the macvtap's. One port for all remotes: the switch's split horizon (never back
// out of the port a frame came in on) keeps overlay frames out of the overlay.
import Tap
import VirtioNet

public final class VxlanPort: StackedMacvtapPort, @unchecked Sendable {
    /// `device`: the passthru macvtap on VXLAN device `vxlan`.
    public init(vxlan: String, macvtap device: MacvtapDevice, settings: PortSettings = PortSettings(),
                offloads: VirtioNetOffloads = .all) {
        super.init(name: vxlan, kind: "vxlan", macvtap: device, settings: settings, offloads: offloads)
    }
}
