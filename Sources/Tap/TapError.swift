// TapError: a failed operation on a macvtap or tap device, naming the device kind, the interface,
// the operation and errno.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif

public struct TapError: Error, CustomStringConvertible, Equatable {
    /// "macvtap" or "tap": how the message names the device.
    public var device: String
    public var interface: String
    public var operation: String
    public var errno: Int32
    public var detail: String?

    public init(device: String = "macvtap", interface: String, operation: String, errno: Int32, detail: String? = nil) {
        self.device = device; self.interface = interface; self.operation = operation; self.errno = errno; self.detail = detail
    }

    public var description: String {
        var s = "\(device) '\(interface)': \(operation) failed: \(String(cString: strerror(errno)))"
        if let detail { s += " (\(detail))" }
        return s
    }
}

/// Retries `body` while it fails with EINTR (the loop is SystemCalls'); returns its result (>= 0)
/// or -errno, the convention of the tb_tun_* shims.
@inline(__always)
func retryingEINTR(_ body: () -> Int32) -> Int32 {
    let r = Syscall.uninterrupted(body)
    return r >= 0 ? r : -errno
}
