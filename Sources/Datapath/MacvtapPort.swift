// MacvtapPort: a macvtap interface as a bridge port; one queue (fd) per worker, vnet header and
// offloads on by default.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import Tap
import VirtioNet
import CTapbridgeShim

public final class MacvtapPort: Port, @unchecked Sendable {
    public let device: MacvtapDevice
    public let settings: PortSettings
    public let vnetHeaderSize: Int
    /// Offloads this port was asked to allow at most (`[]` turns GSO off on this port).
    public let offloadLimit: VirtioNetOffloads
    public var name: String { device.name }
    public var kind: String { "macvtap" }
    public var framing: Framing { .datagram }
    public var isMultiQueue: Bool { true }
    /// With a vnet header a macvtap takes GSO frames and partial checksums on write.
    public var transmitOffloads: VirtioNetOffloads { vnetHeaderSize > 0 ? offloadLimit : [] }
    /// The offloads the kernel accepted at the last negotiation.
    public private(set) var receiveOffloads: VirtioNetOffloads = []
    private var queueFDs: [Int32] = []   // not owned: the engine closes them

    /// `offloads: []` or `vnetHeader: false` gives a port without GSO (frames are segmented
    /// and checksummed by the kernel before we read them).
    public convenience init(name: String, settings: PortSettings = PortSettings(), vnetHeader: Bool = true,
                            offloads: VirtioNetOffloads = .all) throws {
        self.init(device: try MacvtapDevice(name: name), settings: settings, vnetHeader: vnetHeader, offloads: offloads)
    }

    public init(device: MacvtapDevice, settings: PortSettings = PortSettings(), vnetHeader: Bool = true,
                offloads: VirtioNetOffloads = .all) {
        self.device = device
        self.settings = settings
        vnetHeaderSize = vnetHeader ? 12 : 0
        offloadLimit = vnetHeader ? offloads : []
    }

    public func openQueue(_ index: Int) throws -> Int32? {
        let q = try device.openQueue(vnetHeaderSize: vnetHeaderSize, offloads: receiveOffloads)
        let fd = q.takeDescriptor()
        queueFDs.append(fd)
        return fd
    }

    public func setReceiveOffloads(_ offloads: VirtioNetOffloads) throws {
        let want = offloads.intersection(offloadLimit)
        guard let fd = queueFDs.last else { receiveOffloads = want; return }
        // TUNSETOFFLOAD is per device on macvtap, so one queue's fd sets it for all.
        receiveOffloads = try MacvtapQueue.setOffloads(want, descriptor: fd, interface: name)
    }

    public func descriptorsClosed() { queueFDs.removeAll() }

    /// TUNGETIFF fails with ENOLINK once the macvtap is deleted (its queues stay open but dead).
    public func checkAlive() -> Int32 {
        guard let fd = queueFDs.first else { return 0 }
        var flags: Int32 = 0
        let r = tb_tun_get_flags(fd, &flags)
        return r == -ENOLINK || r == -ENODEV || r == -EBADFD ? -r : 0
    }

    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .remove }
}

