// Port: the seam between the engine and anything frames come from or go to (macvtap queues,
// VM sockets, taps, AF_PACKET). A port only opens descriptors and describes them; the engine
// does all reading, writing, framing and offload handling, so a new kind of port is small.
import Frames
import VhostUser
import VirtioNet

/// How frames are delimited on a port's descriptor.
public enum Framing: Sendable, Equatable {
    /// One read is one frame, one write is one frame (macvtap, tap, Unix/UDP datagram sockets,
    /// AF_PACKET). The vnet header, if any, precedes the frame in the same read/write.
    case datagram
    /// A byte stream of 4-byte big-endian length + frame (QEMU `-netdev stream`). Writes to the
    /// port are serialised and short writes continued; end of file is a disconnect.
    case lengthPrefixed
    /// virtio-net queues in a guest's memory (vhost-user): the descriptor the engine polls is
    /// the transmit queue's kick eventfd, frames are read from and written into the rings of
    /// `Port.virtqueues(_:)` (Datapath's VirtqueueTransport.swift).
    case virtqueue
}

/// How a port behaves in its bridge (the handler-visible part of `PortInfo`).
public struct PortSettings: Sendable {
    public var vlan: VLANMode
    public var isolated: Bool
    public var hairpin: Bool
    public var assignedMAC: MACAddress?
    public init(vlan: VLANMode = .unaware, isolated: Bool = false, hairpin: Bool = false, assignedMAC: MACAddress? = nil) {
        self.vlan = vlan; self.isolated = isolated; self.hairpin = hairpin; self.assignedMAC = assignedMAC
    }
}

/// What the engine does when a port's descriptor reports end of file or an error.
public enum PortFailureAction: Sendable {
    /// Detach the port from its bridge (its link is gone).
    case remove
    /// Keep the port (PortID and handler state stay) but close its descriptor; frames for it
    /// are dropped as `portDown` until `Engine.reconnect` gives it a new one (a VM restarting).
    case disconnect
}

/// A place frames come from and go to. Called from the control thread only (never per frame).
public protocol Port: AnyObject {
    var name: String { get }
    /// "macvtap", "vm-stream", "vm-dgram", ... (informational, shown to handlers).
    var kind: String { get }
    var settings: PortSettings { get }
    var framing: Framing { get }
    /// Longest frame (without vnet header) accepted from the port: on a length-prefixed stream a
    /// prefix above it closes the connection; a longer datagram is dropped and counted as
    /// `too-big` (so is one longer than the engine's buffer, which a socket read cuts short).
    /// Bounded by the engine's buffer size, and on a stream by 65535 (QEMU's bound). Default:
    /// no bound of the port's own (a device such as a macvtap or tap delivers GSO super-frames
    /// of 64 KiB plus headers); a port facing an untrusted peer states its limit (VM ports:
    /// `max-frame`).
    var maxFrameSize: Int { get }
    /// Bytes of virtio-net header before each frame on reads and writes: 0, 10 or 12.
    var vnetHeaderSize: Int { get }
    /// What the port can carry on transmit: GSO kinds and partial checksums. Ports with no
    /// vnet header carry neither (`[]`); the bridge negotiates every port's receive offloads
    /// down to what all its ports accept, so GSO frames never reach a port that cannot take them.
    var transmitOffloads: VirtioNetOffloads { get }
    /// True: every worker opens its own queue (`openQueue(worker)`), so forwarding stays within
    /// a worker (multi-queue macvtap). False: one descriptor, read by one worker.
    var isMultiQueue: Bool { get }
    /// Opens queue `index` and hands its descriptor to the engine, which owns it from then on
    /// (it closes it on detach, disconnect and stop). nil: nothing to open yet (a VM socket
    /// waiting for its VM); the port starts disconnected.
    func openQueue(_ index: Int) throws -> Int32?
    /// Limits what the port delivers on receive to `offloads` (TUNSETOFFLOAD on a macvtap).
    /// Ports that never deliver GSO frames ignore it.
    func setReceiveOffloads(_ offloads: VirtioNetOffloads) throws
    /// End of file (`errno` 0) or a read/write error on queue `index`.
    func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction
    /// 0 while the port's descriptors still lead somewhere, else an errno. Polled by the engine
    /// (`EngineConfiguration.healthCheckInterval`) for failures that no read reports: a deleted
    /// macvtap's queue just stops delivering, and writes to it vanish.
    func checkAlive() -> Int32
    /// Virtqueue ports (`framing == .virtqueue`): the queue pair served through queue `index`
    /// (the first of `virtqueueCount(index)` neighbours).
    func virtqueues(_ index: Int) -> UnsafeMutablePointer<VirtioNetQueuePair>?
    /// Virtqueue ports: how many pairs, from `virtqueues(index)` on, queue `index` serves (a
    /// multi-queue vhost-user port with more pairs than workers gives a worker several).
    func virtqueueCount(_ index: Int) -> Int
    /// Multi-queue ports: the worker that writes this port's frames on behalf of worker
    /// `index` — itself, unless its queue cannot take writes now (a vhost-user worker none of
    /// whose pairs the driver has enabled): frames then reach the writer through a handoff ring.
    /// Asked while the engine opens the port's queues.
    func queueWriter(_ index: Int) -> Int
    /// The engine has closed every descriptor it got from `openQueue` (detach, disconnect, stop).
    func descriptorsClosed()
}

extension Port {
    /// Virtqueue ports: the queue pair behind queue `index` (a stable address, valid from
    /// `openQueue(index)` until the engine has disconnected or detached the port).
    public func virtqueues(_ index: Int) -> UnsafeMutablePointer<VirtioNetQueuePair>? { nil }
    public func virtqueueCount(_ index: Int) -> Int { 1 }
    public func queueWriter(_ index: Int) -> Int { index }
    public var settings: PortSettings { PortSettings() }
    public var isMultiQueue: Bool { false }
    public var maxFrameSize: Int { Int.max }
    public func setReceiveOffloads(_ offloads: VirtioNetOffloads) throws {}
    public func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .remove }
    public func descriptorsClosed() {}
    public func checkAlive() -> Int32 { 0 }
}
