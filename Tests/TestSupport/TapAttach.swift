// attachAs: a process of another uid/gid (setpriv, no capabilities) attaching one queue to a
// tap, the way a VMM does (TUNSETIFF by name): "ok" or the errno name the kernel answered.
import Foundation

/// Attaches one queue to tap `name` as `uid`/`gid` (setpriv, no capabilities) and prints
/// "ok" or the errno name.
public func attachAs(uid: UInt32, gid: UInt32, tap name: String, multiQueue: Bool = false) throws -> String {
    let flags = 0x0002 | 0x1000 | 0x4000 | (multiQueue ? 0x0100 : 0)   // TAP|NO_PI|VNET_HDR(|MULTI_QUEUE)
    let script = """
    import fcntl, os, struct, errno
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"\(name)", \(flags)))
        print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
    """
    let r = try run(["setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--inh-caps=-all",
                     "/usr/bin/python3", "-c", script], check: false)
    return (r.stdout + r.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
}
