// Bridge: one broadcast domain: its handler pipeline, its ports (PortID allocation, PortTable
// snapshots for handlers) and the offloads negotiated across its ports.
import Frames
import Synchronization
import VirtioNet

/// The control-side record of an attached port.
final class PortRecord {
    let id: PortID
    let port: any Port
    unowned let bridge: Bridge
    /// Descriptors handed to the engine: one per worker for multi-queue ports, else one.
    var fds: [Int32] = []
    /// The worker that reads a single-descriptor port.
    var owner = 0
    var connected = false
    /// Counts the port's connections (`openAndAnnounce` that connected): a worker's failure
    /// report names the one it saw fail and is ignored once the port has another.
    var connection: UInt32 = 0
    var adminUp = true
    /// The capture session capturing this port, if any.
    var capture: ObjectIdentifier?
    /// One counter block per worker.
    let counters: [CounterBlock]

    init(id: PortID, port: any Port, bridge: Bridge, workers: Int) {
        self.id = id; self.port = port; self.bridge = bridge
        counters = (0..<workers).map { _ in CounterBlock(count: PortCounter.count) }
    }

    var info: PortInfo {
        let s = port.settings
        return PortInfo(id: id, name: port.name, kind: port.kind, vlan: s.vlan, isolated: s.isolated,
                        hairpin: s.hairpin, assignedMAC: s.assignedMAC)
    }
}

public final class Bridge: @unchecked Sendable {
    public let name: String
    public let pipeline: HandlerPipeline
    /// Offloads the bridge may use at most; `[]` turns GSO off for every port.
    public let offloadLimit: VirtioNetOffloads
    /// Keep TSO on when some ports cannot take it, segmenting in software for those ports only
    /// (default). Off: offloads are negotiated down to what every port accepts.
    public let softwareSegmentation: Bool
    let index: Int
    unowned let engine: Engine
    var records: [Int: PortRecord] = [:]   // PortID.rawValue -> record; guarded by the engine's control lock

    private let published = Mutex<(table: PortTable, offloads: VirtioNetOffloads)>((PortTable.empty, []))
    /// The ports as handlers last saw them (safe to read from any thread).
    public var portTable: PortTable { published.withLock { $0.table } }
    /// Offloads currently in force on every port's receive side (what all ports accept).
    public internal(set) var offloads: VirtioNetOffloads {
        get { published.withLock { $0.offloads } }
        set { published.withLock { $0.offloads = newValue } }
    }

    init(name: String, pipeline: HandlerPipeline, offloadLimit: VirtioNetOffloads, softwareSegmentation: Bool,
         index: Int, engine: Engine) {
        self.name = name; self.pipeline = pipeline; self.offloadLimit = offloadLimit
        self.softwareSegmentation = softwareSegmentation
        self.index = index; self.engine = engine
    }

    /// Attaches `port` (opens its queues) and returns its PortID. See `Engine.attach`.
    @discardableResult
    public func attach(_ port: any Port) throws -> PortID { try engine.attach(port, to: self) }

    /// Detaches the port and closes its descriptors. See `Engine.detach`.
    public func detach(_ id: PortID) { engine.detach(id, from: self) }

    /// The PortID of the attached port called `name`.
    public func port(named name: String) -> PortID? { portTable.port(named: name)?.id }

    func allocatePortID() -> PortID? {
        for i in 0..<PortSet.capacity where records[i] == nil { return PortID(i) }
        return nil
    }

    /// Publishes a new PortTable to the handlers.
    func publishPorts() {
        let table = PortTable(records.keys.sorted().compactMap { records[$0]?.info })
        published.withLock { $0.table = table }
        pipeline.portsChanged(table)
    }

    /// Negotiates receive offloads down to what every port can transmit, so no port is ever
    /// handed a GSO frame or partial checksum it cannot carry, and applies them.
    func renegotiateOffloads(log: EngineLogHandler) {
        var o = offloadLimit
        // TSO and partial checksums the engine can finish itself (software segmentation and
        // checksum completion for the ports without them); other GSO kinds must be supported
        // by every port.
        let software: VirtioNetOffloads = softwareSegmentation ? [.checksum, .tso4, .tso6, .tsoECN] : []
        for r in records.values { o.formIntersection(r.port.transmitOffloads.union(software)) }
        if !o.contains(.checksum) { o = [] }
        for r in records.values {
            do { try r.port.setReceiveOffloads(o) } catch { log(.warning, "bridge \(name): \(error)") }
        }
        if o != offloads { log(.info, "bridge \(name): offloads \(o)") }
        offloads = o
    }
}
