// WorkerState: the plain structs a worker keeps in preallocated arrays (ports, bridges,
// transmit slots) and the commands the control thread sends it.
import Capture
import Foundation
import Frames
import VhostUser
import VirtioNet

/// What the control thread tells a worker about one port.
struct WorkerPortSpec {
    var bridge: Int
    var id: PortID
    /// -1: no descriptor (disconnected).
    var fd: Int32
    /// This worker reads the descriptor (its own queue, or it owns the single descriptor).
    var reads: Bool
    var transport: PortTransport
    /// Longest frame (without vnet header) a length prefix may announce on a stream port.
    var maxFrame: Int
    var vnetHeaderSize: Int
    var transmitOffloads: VirtioNetOffloads
    var vlan: VLANMode
    var adminUp: Bool
    var counters: CounterBlock
    /// This worker may write to the descriptor (false: a byte stream another worker owns;
    /// frames go to `owner` through a handoff ring).
    var writable: Bool
    var owner: Int
    /// Virtqueue ports: the queue pair (nil for other transports), and how many neighbouring
    /// pairs from it this worker serves.
    var virtqueues: UnsafeMutablePointer<VirtioNetQueuePair>? = nil
    var virtqueueCount = 1
    /// The engine's number for this connection of the port (`PortRecord.connection`): a
    /// failure this worker reports names it, so a late report cannot take down the next one.
    var connection: UInt32 = 0
}

/// How a worker moves frames through a port's descriptor. Each case has its own file that owns
/// its reads, writes and per-port state (DatagramTransport.swift, StreamTransport.swift); the
/// worker reaches it by an exhaustive `switch` in a handful of places (arming a read, preparing
/// and completing a write, the framing prefix, per-port set-up and tear-down), so a new transport
/// is one new file plus one case in each of those switches — the compiler lists them. Plain enum
/// stored in the port slot: no existential, closure or reference per frame.
enum PortTransport: UInt8 {
    /// One read = one frame, one write = one frame (macvtap, tap, datagram sockets).
    case datagram
    /// 4-byte big-endian length + frame on a byte stream (QEMU `-netdev stream`).
    case lengthPrefixedStream
    /// virtio-net queues in guest memory (vhost-user): a multishot poll on the transmit kick
    /// eventfd, frames taken from descriptor chains and written into receive buffers, used
    /// rings published and call eventfds written once per batch (VirtqueueTransport.swift).
    case virtqueue

    /// The transport the worker uses for a port with public framing `framing`.
    @inline(__always)
    init(_ framing: Framing) {
        switch framing {
        case .datagram: self = .datagram
        case .lengthPrefixed: self = .lengthPrefixedStream
        case .virtqueue: self = .virtqueue
        }
    }

    /// Only one worker may write to the descriptor (interleaved writes would break the framing);
    /// frames from other workers reach it through a handoff ring.
    var needsSingleWriter: Bool {
        switch self {
        case .datagram: return false
        case .lengthPrefixedStream: return true
        case .virtqueue: return true   // the rings have one user: the owning worker
        }
    }
}

enum WorkerCommand {
    case addBridge(index: Int, pipeline: HandlerPipeline)
    case addPort(WorkerPortSpec)
    case removePort(bridge: Int, id: PortID)
    case disconnectPort(bridge: Int, id: PortID)
    case setUp(bridge: Int, id: PortID, up: Bool)
    /// Rings to (outbound[w]) and from (inbound[w]) worker w, and the workers' eventfds.
    /// Capture this port's frames into `tap` (flags: CaptureDirection bits; 0 and nil: stop).
    case setCapture(bridge: Int, id: PortID, flags: UInt8, interface: UInt16, tap: Unmanaged<CaptureTap>?)
    case setHandoff(outbound: [HandoffRing?], inbound: [HandoffRing?], wakeFDs: [Int32])
    case stop
}

enum OpKind {
    static let read: UInt8 = 1, write: UInt8 = 2, control: UInt8 = 3, cancel: UInt8 = 4, streamRead: UInt8 = 5
    /// A completion already handled out of order (`Worker.takeWriteCompletions`); skipped.
    static let taken: UInt8 = 6
    /// The transmit kick eventfd of a virtqueue port became readable (multishot poll).
    static let kick: UInt8 = 7
}

enum LocalPortState {
    static let free: UInt8 = 0, active: UInt8 = 1, down: UInt8 = 2
}

/// One port as one worker sees it. Trivial (no references) so the array is plain memory.
struct LocalPort {
    var state = LocalPortState.free
    var generation: UInt8 = 0
    var reads = false
    var readArmed = false
    var starved = false
    var adminUp = true
    var writable = true
    var transport = PortTransport.datagram
    /// Datagram sockets only: a zero-length read is an empty datagram (a malformed frame), not
    /// end of file, which a datagram socket never reports; and a send refused because the
    /// peer is gone takes the port down (`completeDatagramWrite`).
    var emptyReadIsFrame = false
    /// The port's VLANMode flattened (no references, so egress reads it without ARC traffic):
    /// kind 0 unaware (egress leaves tags alone), 1 access (pvid), 2 trunk (native, 0 none; allowed bits in
    /// `Worker.vlanAllowed`).
    var vlanKind: UInt8 = 0
    var vlanPVID: UInt16 = 0
    var owner: Int32 = 0
    var bridge: Int32 = 0
    var id = PortID(0)
    var fd: Int32 = -1
    var vnetHeaderSize: Int32 = 0
    var transmitOffloads = VirtioNetOffloads()
    var txHead: Int32 = -1, txTail: Int32 = -1
    var txQueued: Int32 = 0, txInflight: Int32 = 0, txMaxInflight: Int32 = 0
    /// Copies held in the worker's timed queue for this port (WorkerHold.swift).
    var txHeld: Int32 = 0
    var counters: CounterBlock? = nil
    /// Stream ports only: the reassembly buffer reads fill, and how many bytes it holds.
    var rxBuffer: UnsafeMutableRawPointer? = nil
    var rxFill: Int32 = 0
    /// Stream ports only: room for one writev that carries up to `Worker.streamBatch` queued
    /// frames (a stream socket has one write in flight; one frame per write cost a ring round
    /// trip per frame).
    var batchIov: UnsafeMutablePointer<iovec>? = nil
    var maxFrame: Int32 = 0
    /// Virtqueue ports only: the queue pair in guest memory (owned by the port, held here
    /// between addPort and detach), and whether its used rings have entries to publish.
    var virtqueues: UnsafeMutablePointer<VirtioNetQueuePair>? = nil
    /// Pairs this worker serves from `virtqueues` on (a multi-queue port with more pairs than
    /// workers gives one worker several; inactive ones are skipped).
    var virtqueueCount: Int32 = 0
    var virtqueuePending = false
    /// Virtqueue ports only: the transmit ring is polled each worker loop (kicks off) since a
    /// drain found frames; `virtqueueIdleSince` is when it last did (ns). `virtqueueInPollList`:
    /// the slot is in `Worker.virtqueuePollList` (it leaves the list lazily, so a port that
    /// stops and starts polling again is never listed twice).
    var virtqueuePolling = false
    var virtqueueInPollList = false
    var virtqueueIdleSince: UInt64 = 0
    /// Capture: CaptureDirection bits (0: not captured; the only thing the hot path reads when
    /// no capture runs), the pcapng interface index, and the session's tap for this worker
    /// (unretained: the session keeps it alive until every worker has dropped it).
    var captureFlags: UInt8 = 0
    var captureInterface: UInt16 = 0
    var captureTap: Unmanaged<CaptureTap>? = nil
    /// The engine's connection number of the descriptor (WorkerPortSpec.connection); cold,
    /// read only when the port fails.
    var connection: UInt32 = 0
}

/// One bridge as one worker sees it.
struct LocalBridge {
    var pipeline: Unmanaged<HandlerPipeline>? = nil
    /// PortID.rawValue -> local port slot, -1 if absent.
    var slotByID: UnsafeMutablePointer<Int16>
    /// Ports this worker can send to.
    var members = PortSet()
    /// The pipeline has handlers (a verdict depends on the frame's bytes). A frame a guest
    /// transmits is then copied out of guest memory before it is judged: judged in place, the
    /// guest could rewrite it between the verdict and the write (past anti-spoofing or a filter).
    var judges = false
}

/// A write in flight or queued: which buffer it holds, where to, and its iovecs
/// (`Worker.iovecsPerSlot` of them at `iov + index * iovecsPerSlot`).
struct TxSlot {
    var buffer: Int32 = -1
    var port: Int16 = -1
    var generation: UInt8 = 0
    var iovFirst: Int32 = 0
    var iovCount: Int32 = 0
    var remaining: Int32 = 0
    var frameBytes: Int32 = 0
    var next: Int32 = -1
    /// The next slot carried by the same stream writev (-1: last). Separate from `next`, which
    /// links the port's transmit queue, so a completion frees exactly the frames it carried.
    var batchNext: Int32 = -1
}
