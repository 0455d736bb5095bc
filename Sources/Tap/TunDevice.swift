// TunDevice and TapQueue: tap interfaces made through /dev/net/tun, the one place for
// TUNSETIFF-by-name, TUNSETPERSIST and TUNSETOWNER/TUNSETGROUP. Two uses:
// - a persistent tap a VMM attaches to by name (`tap` ports: Firecracker, cloud-hypervisor,
//   crosvm, QEMU `-netdev tap`); owner/group let an unprivileged VMM attach, and the kernel
//   refuses anyone else. tapbridge never reads its queues (the VMM does): it reads a passthru
//   macvtap on top of it instead (docs/vms.md).
// - a tap whose queues tapbridge itself reads (`host` ports: the host's own stack on a bridge).
//   Not persistent: the kernel deletes it when the last descriptor closes, so even a SIGKILLed
//   daemon leaves nothing behind.
#if canImport(Glibc)
import Glibc
#endif
import CTapbridgeShim
import VirtioNet

/// What a persistent tap is made with.
public struct TapCreation: Sendable, Equatable {
    public var name: String
    /// IFF_MULTI_QUEUE. Whoever attaches later must ask for the same (the kernel answers EINVAL
    /// otherwise): QEMU asks for it only with `queues=N` > 1, Firecracker never.
    public var multiQueue: Bool
    /// Only this user (besides CAP_NET_ADMIN) may attach queues; nil: no owner check.
    public var owner: uid_t?
    /// Only members of this group (besides CAP_NET_ADMIN) may attach; nil: no group check.
    /// With both set, either one suffices (the kernel's rule).
    public var group: gid_t?

    public init(name: String, multiQueue: Bool = false, owner: uid_t? = nil, group: gid_t? = nil) {
        self.name = name; self.multiQueue = multiQueue; self.owner = owner; self.group = group
    }
}

public enum TunDevice {
    /// The tun/tap control device.
    public static let controlPath = "/dev/net/tun"

    /// IFF_MULTI_QUEUE, as sysfs `tun_flags` and TUNGETIFF report it.
    public static let multiQueueFlag = Int32(IFF_MULTI_QUEUE)

    /// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (+IFF_MULTI_QUEUE).
    public static func flags(multiQueue: Bool) -> Int32 {
        Int32(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) | (multiQueue ? Int32(IFF_MULTI_QUEUE) : 0)
    }

    /// Whether an interface called `name` exists in the caller's network namespace.
    public static func exists(_ name: String) -> Bool {
        access("/sys/class/net/\(name)", F_OK) == 0
    }

    /// Creates persistent tap `c.name` (down, no queue attached). Refuses a name already taken:
    /// TUNSETIFF would otherwise attach to that interface instead of making ours.
    public static func createPersistent(_ c: TapCreation) throws {
        try checkName(c.name)
        if exists(c.name) {
            throw TapError(device: "tap", interface: c.name, operation: "create", errno: EEXIST, detail: "an interface with this name exists")
        }
        let fd = try openControl(c.name)
        defer { _ = close(fd) }
        try check(tb_tun_attach(fd, c.name, flags(multiQueue: c.multiQueue)), c.name, "TUNSETIFF(\(flagNames(flags(multiQueue: c.multiQueue))))")
        // Until TUNSETPERSIST succeeds, closing the descriptor removes the half-made tap.
        if let owner = c.owner { try check(tb_tun_set_owner(fd, owner), c.name, "TUNSETOWNER(\(owner))") }
        if let group = c.group { try check(tb_tun_set_group(fd, group), c.name, "TUNSETGROUP(\(group))") }
        try check(tb_tun_set_persist(fd, 1), c.name, "TUNSETPERSIST(1)")
    }

    /// Makes persistent tap `name` non-persistent; the kernel deletes it once no queue is open
    /// (at once when none is). `multiQueue` must match how it was made. Deleting over
    /// rtnetlink (RTM_DELLINK) works too and does not depend on the flags or on a VMM
    /// holding a single-queue tap (TUNSETIFF then answers EBUSY): the daemon uses that.
    public static func deletePersistent(name: String, multiQueue: Bool) throws {
        try checkName(name)
        let fd = try openControl(name)
        defer { _ = close(fd) }
        try check(tb_tun_attach(fd, name, flags(multiQueue: multiQueue)), name, "TUNSETIFF(\(flagNames(flags(multiQueue: multiQueue))))")
        try check(tb_tun_set_persist(fd, 0), name, "TUNSETPERSIST(0)")
    }

    /// Opens one queue of tap `name`: creates a non-persistent multi-queue tap if `create`,
    /// else attaches to the existing one. Every call is one more queue (the kernel allows 256).
    /// `vnetHeaderSize` 10 or 12; `offloads`: what this reader accepts (TUNSETOFFLOAD sets the
    /// device's features, so the host stack hands it GSO frames only with them).
    public static func openQueue(name: String, create: Bool = false, multiQueue: Bool = true,
                                 vnetHeaderSize: Int = 12, offloads: VirtioNetOffloads = .all,
                                 sendBuffer: Int32? = Int32.max) throws -> TapQueue {
        try checkName(name)
        if create && exists(name) {
            throw TapError(device: "tap", interface: name, operation: "create", errno: EEXIST, detail: "an interface with this name exists")
        }
        if !create && !exists(name) {
            throw TapError(device: "tap", interface: name, operation: "open queue", errno: ENODEV, detail: "no interface '\(name)' in this namespace")
        }
        guard vnetHeaderSize == 10 || vnetHeaderSize == 12 else {
            throw TapError(device: "tap", interface: name, operation: "TUNSETVNETHDRSZ", errno: EINVAL, detail: "size must be 10 or 12, not \(vnetHeaderSize)")
        }
        let fd = try openControl(name)
        let q = TapQueue(fd: fd, interface: name)
        let f = flags(multiQueue: multiQueue)
        try check(tb_tun_attach(fd, name, f), name, "TUNSETIFF(\(flagNames(f)))")
        try check(tb_tun_set_vnet_hdr_size(fd, Int32(vnetHeaderSize)), name, "TUNSETVNETHDRSZ(\(vnetHeaderSize))")
        q.vnetHeaderSize = vnetHeaderSize
        if let sendBuffer { try check(tb_tun_set_sndbuf(fd, sendBuffer), name, "TUNSETSNDBUF(\(sendBuffer))") }
        try q.setOffloads(offloads)
        return q
    }

    /// A user name or a numeric uid, as the system knows it; nil if unknown.
    public static func userID(_ nameOrNumber: String) -> uid_t? {
        if let n = UInt32(nameOrNumber), n != UInt32.max { return n }
        var pwd = passwd(), result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(nameOrNumber, &pwd, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return pwd.pw_uid
    }

    /// A group name or a numeric gid, as the system knows it; nil if unknown.
    public static func groupID(_ nameOrNumber: String) -> gid_t? {
        if let n = UInt32(nameOrNumber), n != UInt32.max { return n }
        var grp = group(), result: UnsafeMutablePointer<group>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(nameOrNumber, &grp, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return grp.gr_gid
    }

    static func checkName(_ name: String) throws {
        if name.isEmpty || name.utf8.count >= Int(tb_ifnamsiz()) || name.contains("/") || name == "." || name == ".." {
            throw TapError(device: "tap", interface: name, operation: "name check", errno: EINVAL,
                                 detail: "an interface name is 1 to \(tb_ifnamsiz() - 1) characters, no '/'")
        }
    }

    static func openControl(_ name: String) throws -> Int32 {
        let fd = retryingEINTR { open(controlPath, O_RDWR | O_NONBLOCK | O_CLOEXEC) }
        if fd < 0 { throw TapError(device: "tap", interface: name, operation: "open \(controlPath)", errno: -fd) }
        return fd
    }

    static func check(_ r: Int32, _ name: String, _ op: String) throws {
        if r < 0 { throw TapError(device: "tap", interface: name, operation: op, errno: -r) }
    }
}

/// One queue (one open file of /dev/net/tun attached to a tap). Owns its fd until `close()` or
/// `takeDescriptor()`; closing the last queue of a non-persistent tap deletes the tap.
public final class TapQueue: @unchecked Sendable {
    public private(set) var fd: Int32
    public let interface: String
    public internal(set) var vnetHeaderSize = 0
    public private(set) var offloads: VirtioNetOffloads = []

    init(fd: Int32, interface: String) { self.fd = fd; self.interface = interface }
    deinit { close() }

    /// TUNSETOFFLOAD, probed down to what the kernel takes (per device: applies to all queues).
    @discardableResult
    public func setOffloads(_ wanted: VirtioNetOffloads) throws -> VirtioNetOffloads {
        do {
            offloads = try MacvtapQueue.setOffloads(wanted, descriptor: fd, interface: interface)
        } catch let e as TapError {
            throw TapError(device: "tap", interface: interface, operation: e.operation, errno: e.errno)
        }
        return offloads
    }

    /// TUNSETQUEUE: take this queue out of the device's transmit hashing (it then receives
    /// nothing, but still keeps a non-persistent tap alive) or back in.
    public func setEnabled(_ enabled: Bool) throws {
        try TunDevice.check(tb_tun_set_queue(fd, enabled ? 1 : 0), interface, enabled ? "TUNSETQUEUE(attach)" : "TUNSETQUEUE(detach)")
    }

    /// TUNGETIFF: the interface's name and IFF_* flags (EBADFD once the tap was deleted).
    public func attachment() throws -> (name: String, flags: Int32) {
        var flags: Int32 = 0
        var name = [CChar](repeating: 0, count: Int(tb_ifnamsiz()))
        try TunDevice.check(tb_tun_get_name(fd, &name, &flags), interface, "TUNGETIFF")
        return (String(cString: name), flags)
    }

    /// Hands the fd over to the caller (the engine closes it); this object no longer owns it.
    public func takeDescriptor() -> Int32 {
        let f = fd; fd = -1; return f
    }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }
}
