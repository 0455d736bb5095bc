// MacvtapDevice and MacvtapQueue: a macvtap's character device, found by the major:minor in
// sysfs (never by trusting /dev/tapN, whose number is a per-namespace ifindex), opened through a
// private device node, one fd per queue, with its TUN flags, vnet header and offloads set.
#if canImport(Glibc)
import Glibc
#endif
import CTapbridgeShim
import SystemCalls
import VirtioNet

/// A macvtap interface in the caller's network namespace.
public struct MacvtapDevice: Sendable, CustomStringConvertible {
    public let name: String
    public let ifindex: Int32
    public let major: UInt32
    public let minor: UInt32

    /// A macvtap whose character device numbers are already known (read from sysfs inside the
    /// link's namespace, for a macvtap that lives in another network namespace).
    public init(name: String, ifindex: Int32 = 0, major: UInt32, minor: UInt32) {
        self.name = name; self.ifindex = ifindex; self.major = major; self.minor = minor
    }

    /// Looks `name` up in sysfs: `/sys/class/net` shows the network namespace sysfs was mounted
    /// in (the process's), so for a macvtap in another namespace pass the root of a sysfs
    /// mounted there, or use `init(name:ifindex:major:minor:)`.
    public init(name: String, sysfs: String = "/sys") throws {
        self.name = name
        let base = "\(sysfs)/class/net/\(name)"
        guard let idx = readSysfs("\(base)/ifindex").flatMap({ Int32($0) }) else {
            throw TapError(interface: name, operation: "lookup", errno: ENODEV, detail: "no interface '\(name)' in this namespace")
        }
        ifindex = idx
        guard let devFile = listDirectory("\(base)/macvtap").first(where: { $0.hasPrefix("tap") }),
              let dev = readSysfs("\(base)/macvtap/\(devFile)/dev") else {
            throw TapError(interface: name, operation: "lookup", errno: ENODEV, detail: "'\(name)' is not a macvtap (no \(base)/macvtap/tapN/dev)")
        }
        let parts = dev.split(separator: ":")
        guard parts.count == 2, let ma = UInt32(parts[0]), let mi = UInt32(parts[1]) else {
            throw TapError(interface: name, operation: "lookup", errno: EINVAL, detail: "unreadable device number '\(dev)'")
        }
        major = ma; minor = mi
    }

    public var description: String { "\(name) (ifindex \(ifindex), char \(major):\(minor))" }

    /// Opens one more queue of this macvtap (every open of the device is a new queue; the
    /// kernel allows up to 256 per macvtap). `vnetHeaderSize` 0 turns the vnet header off;
    /// otherwise 10 or 12. `offloads` is what this reader accepts (probed down to what the
    /// kernel takes; the result is in `MacvtapQueue.offloads`).
    public func openQueue(vnetHeaderSize: Int = 12, offloads: VirtioNetOffloads = .all,
                          sendBuffer: Int32? = Int32.max) throws -> MacvtapQueue {
        // (on a failure below, the queue goes away and closes its descriptor)
        let q = MacvtapQueue(descriptor: try openPrivateNode(), interface: name)
        try q.configure(vnetHeaderSize: vnetHeaderSize)
        if let sendBuffer { try q.setSendBuffer(sendBuffer) }
        if vnetHeaderSize > 0 { try q.setOffloads(offloads) } else { try q.setOffloads([]) }
        return q
    }

    /// mknod a private node in a fresh 0700 directory, open it, remove both: no stale or
    /// foreign /dev/tapN can be opened by mistake, and nothing is left behind.
    private func openPrivateNode() throws -> OwnedDescriptor {
        var template = Array("/tmp/tapbridge-node.XXXXXX".utf8CString)
        guard let dirPtr = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TapError(interface: name, operation: "mkdtemp for a private device node", errno: errno)
        }
        let dir = String(cString: dirPtr)
        let path = dir + "/tap"
        defer { _ = unlink(path); _ = rmdir(dir) }
        if mknod(path, S_IFCHR | 0o600, tb_makedev(major, minor)) != 0 {
            throw TapError(interface: name, operation: "mknod \(major):\(minor)", errno: errno)
        }
        do { return try Syscall.open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC) } catch {
            throw TapError(interface: name, operation: "open char device \(major):\(minor)", errno: error.errno)
        }
    }
}

/// One queue (one open file) of a macvtap. Owns its fd until `close()` or `takeDescriptor()`.
public final class MacvtapQueue: @unchecked Sendable {
    /// nil once closed or handed over (closes itself when the queue goes).
    private var descriptor: OwnedDescriptor?
    /// The descriptor number, -1 once closed or handed over.
    public var fd: Int32 { descriptor?.rawValue ?? -1 }
    public let interface: String
    public private(set) var vnetHeaderSize = 0
    public private(set) var offloads: VirtioNetOffloads = []

    init(descriptor: consuming OwnedDescriptor, interface: String) { self.descriptor = .some(descriptor); self.interface = interface }

    /// Sets IFF_TAP|IFF_NO_PI (+IFF_VNET_HDR) explicitly and the vnet header size.
    func configure(vnetHeaderSize: Int) throws {
        var current: Int32 = 0
        try check(tb_tun_get_flags(fd, &current), "TUNGETIFF")
        var flags = Int32(IFF_TAP | IFF_NO_PI) | (current & Int32(IFF_MULTI_QUEUE))
        if vnetHeaderSize > 0 { flags |= Int32(IFF_VNET_HDR) }
        try check(tb_tun_set_flags(fd, flags), "TUNSETIFF(\(flagNames(flags)))")
        if vnetHeaderSize > 0 {
            guard vnetHeaderSize == 10 || vnetHeaderSize == 12 else {
                throw TapError(interface: interface, operation: "TUNSETVNETHDRSZ", errno: EINVAL, detail: "size must be 10 or 12, not \(vnetHeaderSize)")
            }
            try check(tb_tun_set_vnet_hdr_size(fd, Int32(vnetHeaderSize)), "TUNSETVNETHDRSZ(\(vnetHeaderSize))")
        }
        self.vnetHeaderSize = vnetHeaderSize
    }

    /// TUNSETOFFLOAD: what GSO/checksum state the kernel may hand this reader. Bits the kernel
    /// rejects (USO before 6.2, ...) are dropped one group at a time; the accepted set is kept.
    /// On macvtap this is per device: it applies to every queue.
    @discardableResult
    public func setOffloads(_ wanted: VirtioNetOffloads) throws -> VirtioNetOffloads {
        offloads = try MacvtapQueue.setOffloads(wanted, descriptor: fd, interface: interface)
        return offloads
    }

    /// TUNSETOFFLOAD on any queue descriptor of `interface` (it applies to the whole device).
    public static func setOffloads(_ wanted: VirtioNetOffloads, descriptor fd: Int32, interface: String) throws -> VirtioNetOffloads {
        var want = wanted
        if !want.isEmpty && !want.contains(.checksum) { want = [] }   // GSO needs partial checksums
        let attempts: [VirtioNetOffloads] = [want, want.subtracting([.uso4, .uso6]),
                                       want.subtracting([.uso4, .uso6, .tsoECN]), want.intersection(.checksum), []]
        var lastError: Int32 = 0
        for a in attempts {
            let r = tb_tun_set_offload(fd, a.rawValue)
            if r == 0 { return a }
            lastError = -r
            if lastError != EINVAL { break }
        }
        throw TapError(interface: interface, operation: "TUNSETOFFLOAD(\(wanted))", errno: lastError)
    }

    /// TUNSETSNDBUF: bytes of written frames that may be in flight below this queue (skbs
    /// stay charged to the queue until the lower device's receiver consumes them); beyond it
    /// writes fail with EAGAIN. QEMU uses Int32.max, and so does the engine by default.
    public func setSendBuffer(_ bytes: Int32) throws {
        try check(tb_tun_set_sndbuf(fd, bytes), "TUNSETSNDBUF(\(bytes))")
    }

    /// TUNSETQUEUE: take this queue out of (or back into) the device's transmit hashing.
    public func setEnabled(_ enabled: Bool) throws {
        try check(tb_tun_set_queue(fd, enabled ? 1 : 0), enabled ? "TUNSETQUEUE(attach)" : "TUNSETQUEUE(detach)")
    }

    /// The IFF_* flags the kernel reports (TUNGETIFF).
    public func flags() throws -> Int32 {
        var f: Int32 = 0
        try check(tb_tun_get_flags(fd, &f), "TUNGETIFF")
        return f
    }

    /// Hands the fd over to the caller (the engine closes it); this object no longer owns it.
    public func takeDescriptor() -> Int32 {
        guard let d = descriptor.take() else { return -1 }
        return d.release()
    }

    public func close() { descriptor = nil }

    private func check(_ r: Int32, _ op: String) throws {
        if r < 0 { throw TapError(interface: interface, operation: op, errno: -r) }
    }
}

func flagNames(_ f: Int32) -> String {
    var n: [String] = []
    if f & Int32(IFF_TAP) != 0 { n.append("TAP") }
    if f & Int32(IFF_NO_PI) != 0 { n.append("NO_PI") }
    if f & Int32(IFF_VNET_HDR) != 0 { n.append("VNET_HDR") }
    if f & Int32(IFF_MULTI_QUEUE) != 0 { n.append("MULTI_QUEUE") }
    return n.joined(separator: "|")
}

func readSysfs(_ path: String) -> String? {
    guard let file = try? Syscall.open(path, O_RDONLY | O_CLOEXEC) else { return nil }
    var buf = [UInt8](repeating: 0, count: 256)
    guard case .processed(let n)? = try? buf.withUnsafeMutableBytes({ p in try Syscall.read(file.rawValue, p.baseAddress!, p.count) }),
          n > 0 else { return nil }
    var s = String(decoding: buf[0..<n], as: UTF8.self)
    while s.last == "\n" || s.last == " " { s.removeLast() }
    return s
}

func listDirectory(_ path: String) -> [String] {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
