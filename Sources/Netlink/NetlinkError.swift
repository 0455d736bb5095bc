// NetlinkError: what went wrong managing a link, said so that the user can act on it: the
// operation, the interface (and its parent), the errno, and the kernel's own extended-ack text.
#if canImport(Glibc)
import Glibc
#endif

public struct NetlinkError: Error, Equatable, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case create, delete, change = "change", read, monitor, open = "open netlink socket for"
        case enterNamespace = "enter network namespace for"
    }

    public var operation: Operation
    /// The link's name as the user gave it (or "" when not about one link).
    public var interface: String
    /// "macvtap", "macvlan" or "link".
    public var kind: String
    /// The lower device, for create.
    public var parent: String?
    /// errno, 0 for a validation error found before asking the kernel.
    public var errno: Int32
    /// The kernel's extended-ack message, or our own explanation.
    public var detail: String?

    public init(_ operation: Operation, interface: String, kind: String = "link", parent: String? = nil,
                errno: Int32, detail: String? = nil) {
        self.operation = operation; self.interface = interface; self.kind = kind
        self.parent = parent; self.errno = errno; self.detail = detail
    }

    /// A user input problem caught before the kernel sees it.
    public static func invalid(_ operation: Operation, interface: String, kind: String = "link",
                               parent: String? = nil, _ detail: String) -> NetlinkError {
        NetlinkError(operation, interface: interface, kind: kind, parent: parent, errno: 0, detail: detail)
    }

    /// strerror text, lower-cased like iproute2's ("no such device").
    public var reason: String {
        guard errno != 0 else { return detail ?? "invalid request" }
        var s = String(cString: strerror(errno))
        if let f = s.first { s = f.lowercased() + s.dropFirst() }
        if errno == EPERM || errno == EACCES { s += " (needs CAP_NET_ADMIN)" }
        return s
    }

    public var description: String {
        var subject = interface.isEmpty ? kind : "\(kind) '\(interface)'"
        if let parent, operation == .create { subject += " on '\(parent)'" }
        var text = "cannot \(operation.rawValue) \(subject): \(reason)"
        if errno != 0, let detail, !detail.isEmpty { text += " (\(detail))" }
        return text
    }
}
