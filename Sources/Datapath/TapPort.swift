// TapPort and TapAttachmentPort: the two tap port kinds.
// - TapPort (`host` ports): a tap whose queues tapbridge reads itself, so the host's own stack is
//   a bridge member (its addresses and routes sit on the tap's interface). Same datagram
//   transport as a macvtap queue: one queue per worker, 12-byte vnet header, offloads
//   negotiated with TUNSETOFFLOAD. The tap is not persistent: this port holds one extra queue
//   (the anchor, taken out of transmit hashing) for as long as it lives, so the interface and
//   its addresses survive the engine reopening queues, and the kernel deletes it when the
//   anchor closes — at `release()`, or when the process dies however it dies.
// - TapAttachmentPort (`tap` ports): a VMM owns the tap's queues, so tapbridge reads a passthru
//   macvtap whose lower device is the tap: every frame the VMM writes arrives on the macvtap,
//   every frame written to the macvtap goes to the VMM. It is a MacvtapPort under the tap's name
//   and kind, so GSO, multi-queue and health checks are the macvtap's.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import Tap
import VirtioNet
import CTapbridgeShim

public final class TapPort: Port, @unchecked Sendable {
    public let name: String
    public let kind: String
    public let settings: PortSettings
    public let vnetHeaderSize = 12
    /// Offloads this port was asked to allow at most (`[]`: the host stack segments first).
    public let offloadLimit: VirtioNetOffloads
    public var framing: Framing { .datagram }
    /// The kernel bounds what a tap delivers (a 64 KiB GSO super-frame): no limit of ours
    /// beyond the engine's buffer, as for a macvtap.
    public var maxFrameSize: Int { Int.max }
    public var isMultiQueue: Bool { true }
    public var transmitOffloads: VirtioNetOffloads { offloadLimit }
    /// The offloads the kernel accepted at the last negotiation.
    public private(set) var receiveOffloads: VirtioNetOffloads = []
    private var anchor: TapQueue?
    private var queueFDs: [Int32] = []   // not owned: the engine closes them

    /// Creates tap `name` now (it must not exist), down and without addresses: the owner sets
    /// those (Netlink) before frames are expected.
    public init(creating name: String, kind: String = "host", settings: PortSettings = PortSettings(),
                offloads: VirtioNetOffloads = .all) throws {
        self.name = name
        self.kind = kind
        self.settings = settings
        offloadLimit = offloads
        let q = try TunDevice.openQueue(name: name, create: true, offloads: [])
        try q.setEnabled(false)
        anchor = q
    }

    deinit { release() }

    /// Closes the anchor: once the engine has closed its queues too, the kernel deletes the tap.
    public func release() {
        anchor?.close()
        anchor = nil
    }

    /// Whether this port still holds its tap (false after `release()`).
    public var holdsInterface: Bool { anchor != nil }

    public func openQueue(_ index: Int) throws -> Int32? {
        guard anchor != nil else {
            throw TapError(device: "tap", interface: name, operation: "open queue", errno: ENODEV, detail: "the port was released")
        }
        let q = try TunDevice.openQueue(name: name, offloads: receiveOffloads)
        let fd = q.takeDescriptor()
        queueFDs.append(fd)
        return fd
    }

    public func setReceiveOffloads(_ offloads: VirtioNetOffloads) throws {
        let want = offloads.intersection(offloadLimit)
        // TUNSETOFFLOAD sets the tap's device features: one descriptor sets them for all queues.
        guard let anchor else { receiveOffloads = want; return }
        receiveOffloads = try anchor.setOffloads(want)
    }

    public func descriptorsClosed() { queueFDs.removeAll() }

    /// TUNGETIFF fails with EBADFD once the tap was deleted under us (`ip link del`).
    public func checkAlive() -> Int32 {
        guard let fd = queueFDs.first ?? anchor?.fd else { return 0 }
        var flags: Int32 = 0
        let r = tb_tun_get_flags(fd, &flags)
        return r == -EBADFD || r == -ENODEV || r == -ENOLINK ? -r : 0
    }

    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .remove }
}

/// A tap a VMM attaches to, bridged through the passthru macvtap on top of it.
public final class TapAttachmentPort: StackedMacvtapPort, @unchecked Sendable {
    /// `device`: the macvtap on tap `tap` (read its numbers with `MacvtapDevice(name:)` or over
    /// rtnetlink in the tap's namespace).
    public init(tap: String, macvtap device: MacvtapDevice, settings: PortSettings = PortSettings(),
                offloads: VirtioNetOffloads = .all) {
        super.init(name: tap, kind: "tap", macvtap: device, settings: settings, offloads: offloads)
    }
}

/// A device tapbridge does not read itself (a VMM's tap, a VXLAN device), read through the
/// passthru macvtap whose lower device it is: a MacvtapPort under the device's name and kind.
/// The kinds are its subclasses (TapAttachmentPort here, VxlanPort).
public class StackedMacvtapPort: Port, @unchecked Sendable {
    /// The lower device's name (what the VMM or the user knows).
    public let name: String
    public let kind: String
    /// The passthru macvtap tapbridge reads.
    public let macvtap: MacvtapPort
    public var settings: PortSettings { macvtap.settings }
    public var framing: Framing { .datagram }
    public var vnetHeaderSize: Int { macvtap.vnetHeaderSize }
    public var maxFrameSize: Int { macvtap.maxFrameSize }
    public var transmitOffloads: VirtioNetOffloads { macvtap.transmitOffloads }
    public var isMultiQueue: Bool { true }

    init(name: String, kind: String, macvtap device: MacvtapDevice, settings: PortSettings, offloads: VirtioNetOffloads) {
        self.name = name; self.kind = kind
        macvtap = MacvtapPort(device: device, settings: settings, vnetHeader: true, offloads: offloads)
    }

    public func openQueue(_ index: Int) throws -> Int32? { try macvtap.openQueue(index) }
    public func setReceiveOffloads(_ offloads: VirtioNetOffloads) throws { try macvtap.setReceiveOffloads(offloads) }
    public func descriptorsClosed() { macvtap.descriptorsClosed() }
    public func checkAlive() -> Int32 { macvtap.checkAlive() }
    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .remove }
}
