// DescriptorPort: a port over descriptors someone else opened: a Unix datagram socket (one
// frame per datagram), a QEMU stream socket (length-prefixed), a socketpair in a test. The
// `connect` closure supplies a descriptor each time the engine (re)opens the port.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import VirtioNet

public final class DescriptorPort: Port, @unchecked Sendable {
    public let name: String
    public let kind: String
    public let settings: PortSettings
    public let framing: Framing
    public let vnetHeaderSize: Int
    public let transmitOffloads: VirtioNetOffloads
    public let onFailure: PortFailureAction
    private let connect: () throws -> Int32?

    /// `connect` returns the descriptor to use (the engine owns and closes it) or nil when
    /// there is none yet. `onFailure`: what end of file / an error means for this port.
    public init(name: String, kind: String = "fd", framing: Framing = .datagram, vnetHeaderSize: Int = 0,
                transmitOffloads: VirtioNetOffloads = [], settings: PortSettings = PortSettings(),
                onFailure: PortFailureAction = .remove, connect: @escaping () throws -> Int32?) {
        self.name = name; self.kind = kind; self.framing = framing; self.vnetHeaderSize = vnetHeaderSize
        self.transmitOffloads = vnetHeaderSize > 0 ? transmitOffloads : []
        self.settings = settings; self.onFailure = onFailure; self.connect = connect
    }

    /// A port over one already-open descriptor.
    public convenience init(name: String, descriptor: Int32, framing: Framing = .datagram, kind: String = "fd",
                            settings: PortSettings = PortSettings()) {
        var given: Int32? = descriptor
        self.init(name: name, kind: kind, framing: framing, settings: settings) {
            defer { given = nil }
            return given
        }
    }

    public func openQueue(_ index: Int) throws -> Int32? { try connect() }
    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { onFailure }
}
