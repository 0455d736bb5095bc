// Backend: the vhost-user protocol state machine of one front-end connection, apart from what
// the device does with its queues. Owns feature and protocol-feature negotiation, ownership,
// the memory table (replaced → rings rebuilt over the new mapping), each vring's setup (size,
// addresses, base, kick/call/err eventfds, enable), starting a ring (kick received, rings
// located and checked) and stopping it (GET_VRING_BASE answers the next available index),
// replies (including REPLY_ACK), and containment: a request that cannot be honoured is answered
// with a failure where the protocol allows, logged, counted, and the rings it concerns are
// marked broken and stopped; bad framing ends the connection. Never crashes on what it is sent.
import CVhostUserShim
import Glibc

/// Where started rings run (the datapath). Called on the protocol thread.
public protocol VhostUserQueueHost: AnyObject {
    /// Ring `index` may be served from now on (kick eventfd readable = work).
    func queueStarted(_ index: Int, queue: SplitQueue, kickFD: Int32, callFD: Int32)
    /// Stop serving ring `index` and return its next available index. After this returns the
    /// host no longer touches the ring or its descriptors.
    func queueStopped(_ index: Int) -> UInt16
    /// A started ring's call eventfd changed (-1: none).
    func callChanged(_ index: Int, callFD: Int32)
}

/// What a device offers, fixed per port.
public struct VhostUserDeviceConfig: Sendable {
    /// Name for log lines (the port).
    public var name: String
    /// Device feature bits (virtio-net's) offered on top of the transport bits this back-end
    /// implements (VERSION_1, EVENT_IDX, INDIRECT_DESC, PROTOCOL_FEATURES).
    public var deviceFeatures: UInt64
    /// Queue pairs offered (GET_QUEUE_NUM); >1 also offers protocol feature MQ.
    public var queuePairs: Int
    public init(name: String, deviceFeatures: UInt64, queuePairs: Int = 1) {
        self.name = name; self.deviceFeatures = deviceFeatures; self.queuePairs = max(1, min(queuePairs, VhostUserLimits.maxQueues / 2))
    }
}

public enum VirtioFeature {
    public static let indirectDescriptors: UInt64 = 1 << 28
    public static let eventIndex: UInt64 = 1 << 29
    public static let protocolFeatures: UInt64 = 1 << 30   // VHOST_USER_F_PROTOCOL_FEATURES
    public static let version1: UInt64 = 1 << 32
    /// Transport bits this back-end implements.
    public static let transport: UInt64 = indirectDescriptors | eventIndex | protocolFeatures | version1
}

public enum VhostUserProtocolFeature {
    public static let mq: UInt64 = 1 << 0
    public static let replyAck: UInt64 = 1 << 3
}

/// Per-connection counters (read on the protocol thread or after it ends).
public struct VhostUserCounters: Sendable {
    public var messages = 0
    public var refused = 0
    public var unsupported = 0
    public var ringsBroken = 0
}

public final class VhostUserBackend {
    public struct Vring {
        public var num: UInt32 = 0
        public var address: VringAddress?
        public var base: UInt16 = 0
        public var kickFD: Int32 = -1
        public var callFD: Int32 = -1
        public var errFD: Int32 = -1
        public var enabled = false
        /// Kick received and rings located: handed to the host (if enabled).
        public var started = false
        /// Handed to the host (started && enabled).
        public var running = false
        public var broken: String?
        /// The queue while the backend holds it itself (no host).
        public var queue: SplitQueue?
    }

    public let config: VhostUserDeviceConfig
    public let offeredFeatures: UInt64
    public let offeredProtocolFeatures: UInt64
    public private(set) var ackedFeatures: UInt64 = 0
    public private(set) var ackedProtocolFeatures: UInt64 = 0
    public private(set) var featuresSet = false
    public private(set) var protocolFeaturesSet = false
    public private(set) var hasOwner = false
    public private(set) var vrings: [Vring]
    public private(set) var memory: GuestMemoryMapping?
    public private(set) var counters = VhostUserCounters()
    public weak var host: VhostUserQueueHost?
    public var log: (String) -> Void

    public init(config: VhostUserDeviceConfig, host: VhostUserQueueHost? = nil, log: @escaping (String) -> Void = { _ in }) {
        self.config = config
        self.host = host
        self.log = log
        offeredFeatures = config.deviceFeatures | VirtioFeature.transport
        offeredProtocolFeatures = VhostUserProtocolFeature.replyAck | (config.queuePairs > 1 ? VhostUserProtocolFeature.mq : 0)
        vrings = Array(repeating: Vring(), count: 2 * config.queuePairs)
    }

    deinit { disconnect() }

    public func negotiated(_ bit: UInt64) -> Bool { ackedFeatures & bit == bit }

    // MARK: serving a connection

    /// Serves `connection` until the front-end goes or breaks the framing; returns why it ended.
    /// Everything the connection set up is torn down before returning.
    @discardableResult
    public func serve(_ connection: VhostUserConnection) -> String {
        defer { disconnect() }
        while true {
            let received: ReceivedMessage?
            do { received = try connection.receive() } catch { return "\(config.name): \(error)" }
            guard let received else { return "\(config.name): front-end closed the connection" }
            if let reason = handle(received, replyingOn: connection) { return reason }
        }
    }

    /// Handles one received message and sends its reply. Returns a reason when the connection
    /// must end (bad framing, a reply that cannot be sent).
    public func handle(_ received: ReceivedMessage, replyingOn connection: VhostUserConnection) -> String? {
        counters.messages += 1
        let request = received.header.request
        let message: VhostUserMessage
        do { message = try received.decode() } catch {
            counters.refused += 1
            return "\(config.name): \(error); closing the connection"
        }
        let wantsAck = received.header.needsReply && ackedProtocolFeatures & VhostUserProtocolFeature.replyAck != 0
        var reply: [UInt8]?
        var failed = false
        do {
            reply = try process(message)
        } catch {
            failed = true
            counters.refused += 1
            log("\(config.name): \(VhostUserRequest.name(request)) refused: \(error)")
        }
        do {
            if let reply {
                try connection.reply(request: request, payload: reply)
            } else if wantsAck {
                try connection.reply(request: request, payload: VhostUserEncoder.u64(failed ? 1 : 0))
            } else if failed, case .getVringBase(let index) = message {
                // The front-end waits for this reply whatever happened.
                try connection.reply(request: request, payload: VhostUserEncoder.vringState(index: index, num: 0))
            }
        } catch {
            return "\(config.name): reply to \(VhostUserRequest.name(request)) failed: \(error)"
        }
        return nil
    }

    /// Applies one decoded message; returns the reply payload for requests that have one.
    public func process(_ message: VhostUserMessage) throws(VhostUserError) -> [UInt8]? {
        switch message {
        case .getFeatures:
            return VhostUserEncoder.u64(offeredFeatures)
        case .setFeatures(let features):
            if features & ~offeredFeatures != 0 {
                throw .refused("SET_FEATURES: bits 0x\(String(features & ~offeredFeatures, radix: 16)) were not offered")
            }
            let first = !featuresSet || features != ackedFeatures
            ackedFeatures = features
            featuresSet = true
            if features & VirtioFeature.protocolFeatures == 0 {
                // Without PROTOCOL_FEATURES rings are enabled from the start.
                for i in vrings.indices { setEnabled(i, true) }
            }
            if first { log("\(config.name): negotiated features: \(VirtioNetFeatures.describe(features))") }
            return nil
        case .getProtocolFeatures:
            return VhostUserEncoder.u64(offeredProtocolFeatures)
        case .setProtocolFeatures(let features):
            if features & ~offeredProtocolFeatures != 0 {
                throw .refused("SET_PROTOCOL_FEATURES: bits 0x\(String(features & ~offeredProtocolFeatures, radix: 16)) were not offered")
            }
            if features != ackedProtocolFeatures {
                var names: [String] = []
                if features & VhostUserProtocolFeature.mq != 0 { names.append("MQ") }
                if features & VhostUserProtocolFeature.replyAck != 0 { names.append("REPLY_ACK") }
                log("\(config.name): negotiated protocol features: \(names.isEmpty ? "none" : names.joined(separator: " "))")
            }
            ackedProtocolFeatures = features
            protocolFeaturesSet = true
            return nil
        case .getQueueNum:
            return VhostUserEncoder.u64(UInt64(config.queuePairs))
        case .setOwner:
            hasOwner = true
            return nil
        case .resetOwner, .resetDevice:
            reset()
            return nil
        case .setMemTable(let regions, let fds):
            try setMemoryTable(regions, fds: fds)
            return nil
        case .setVringNum(let index, let num):
            let i = try ring(index, "SET_VRING_NUM")
            if num == 0 || num > UInt32(VhostUserLimits.maxQueueSize) || num & (num - 1) != 0 {
                throw .refused("SET_VRING_NUM: queue \(index): size \(num) (a power of two, 1...\(VhostUserLimits.maxQueueSize))")
            }
            vrings[i].num = num
            return nil
        case .setVringAddr(let address):
            let i = try ring(address.index, "SET_VRING_ADDR")
            if address.flags & VringAddress.flagLog != 0 {
                throw .refused("SET_VRING_ADDR: queue \(address.index) asks for logging, which was not offered")
            }
            vrings[i].address = address
            return nil
        case .setVringBase(let index, let num):
            let i = try ring(index, "SET_VRING_BASE")
            if num > 0xFFFF { throw .refused("SET_VRING_BASE: queue \(index): base \(num) above 65535 (split rings)") }
            vrings[i].base = UInt16(num)
            return nil
        case .getVringBase(let index):
            let i = try ring(index, "GET_VRING_BASE")
            stop(i)
            closeFD(&vrings[i].kickFD)
            return VhostUserEncoder.vringState(index: index, num: UInt32(vrings[i].base))
        case .setVringKick(let index, let fd):
            guard let i = try? ring(index, "SET_VRING_KICK") else {
                if let fd { _ = Glibc.close(fd) }
                throw .refused("SET_VRING_KICK: queue index \(index) beyond \(vrings.count) queues")
            }
            guard let fd else {
                throw .refused("SET_VRING_KICK: queue \(index) without an eventfd (polling mode is not supported)")
            }
            stop(i)
            closeFD(&vrings[i].kickFD)
            vrings[i].kickFD = fd
            try start(i)
            return nil
        case .setVringCall(let index, let fd):
            guard let i = try? ring(index, "SET_VRING_CALL") else {
                if let fd { _ = Glibc.close(fd) }
                throw .refused("SET_VRING_CALL: queue index \(index) beyond \(vrings.count) queues")
            }
            closeFD(&vrings[i].callFD)
            vrings[i].callFD = fd ?? -1
            if vrings[i].running { host?.callChanged(i, callFD: vrings[i].callFD) }
            return nil
        case .setVringErr(let index, let fd):
            guard let i = try? ring(index, "SET_VRING_ERR") else {
                if let fd { _ = Glibc.close(fd) }
                throw .refused("SET_VRING_ERR: queue index \(index) beyond \(vrings.count) queues")
            }
            closeFD(&vrings[i].errFD)
            vrings[i].errFD = fd ?? -1
            return nil
        case .setVringEnable(let index, let enable):
            let i = try ring(index, "SET_VRING_ENABLE")
            // QEMU sends it right after SET_PROTOCOL_FEATURES, before SET_FEATURES carries the
            // PROTOCOL_FEATURES bit: either shows the front-end speaks the protocol extension.
            if ackedFeatures & VirtioFeature.protocolFeatures == 0 && !protocolFeaturesSet {
                throw .refused("SET_VRING_ENABLE without PROTOCOL_FEATURES negotiated")
            }
            if vrings[i].enabled != enable {
                // Pairs beyond the first come and go with the driver's VQ_PAIRS_SET (the
                // front-end turns it into this message): worth a line.
                log("\(config.name): queue \(i) (pair \(i / 2) \(i % 2 == 0 ? "receive" : "transmit")) \(enable ? "enabled" : "disabled")")
            }
            setEnabled(i, enable)
            return nil
        case .unsupported(let request):
            counters.unsupported += 1
            throw .refused("\(VhostUserRequest.name(request)) is not supported (its feature was not offered)")
        }
    }

    // MARK: rings

    private func ring(_ index: UInt32, _ what: String) throws(VhostUserError) -> Int {
        guard Int(index) < vrings.count else {
            throw .refused("\(what): queue index \(index) beyond \(vrings.count) queues (\(config.queuePairs) pairs offered)")
        }
        return Int(index)
    }

    private func closeFD(_ fd: inout Int32) {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    private func setEnabled(_ i: Int, _ enable: Bool) {
        vrings[i].enabled = enable
        if enable { run(i) } else { pause(i) }
    }

    /// Kick received: locate and check the rings, then run if enabled.
    private func start(_ i: Int) throws(VhostUserError) {
        vrings[i].broken = nil
        guard let memory else { return markBroken(i, "queue \(i) started before any memory table") }
        guard let address = vrings[i].address else { return markBroken(i, "queue \(i) started without SET_VRING_ADDR") }
        do {
            vrings[i].queue = try SplitQueue(
                memory: memory.table, address: address, size: vrings[i].num, base: vrings[i].base,
                eventIndex: negotiated(VirtioFeature.eventIndex),
                indirectAllowed: negotiated(VirtioFeature.indirectDescriptors))
        } catch {
            return markBroken(i, "queue \(i): \(error)")
        }
        vrings[i].started = true
        run(i)
    }

    private func run(_ i: Int) {
        guard vrings[i].started, vrings[i].enabled, !vrings[i].running, vrings[i].broken == nil,
              let q = vrings[i].queue else { return }
        vrings[i].running = true
        if let host {
            host.queueStarted(i, queue: q, kickFD: vrings[i].kickFD, callFD: vrings[i].callFD)
            vrings[i].queue = nil
        }
    }

    /// Takes a running ring back from the host (keeping its position).
    private func pause(_ i: Int) {
        guard vrings[i].running else { return }
        vrings[i].running = false
        if let host {
            let next = host.queueStopped(i)
            vrings[i].base = next
            if var q = vrings[i].queue { q.nextAvailable = next; vrings[i].queue = q }
            else if let address = vrings[i].address, let memory {
                vrings[i].queue = try? SplitQueue(memory: memory.table, address: address, size: vrings[i].num, base: next,
                                                  eventIndex: negotiated(VirtioFeature.eventIndex),
                                                  indirectAllowed: negotiated(VirtioFeature.indirectDescriptors))
            }
        } else if let q = vrings[i].queue {
            vrings[i].base = q.nextAvailable
        }
    }

    /// GET_VRING_BASE / reset: the ring stops; `base` keeps where it got to.
    private func stop(_ i: Int) {
        pause(i)
        if let q = vrings[i].queue { vrings[i].base = q.nextAvailable }
        vrings[i].started = false
        vrings[i].queue = nil
    }

    /// Marks ring `i` broken: stopped, logged, counted, the front-end told through the err
    /// eventfd. It runs again when the front-end restarts it (GET_VRING_BASE + SET_VRING_KICK)
    /// or resets the device.
    public func markBroken(_ i: Int, _ reason: String) {
        guard i < vrings.count else { return }
        stop(i)
        vrings[i].broken = reason
        counters.ringsBroken += 1
        log("\(config.name): queue \(i) broken: \(reason)")
        if vrings[i].errFD >= 0 {
            var one: UInt64 = 1
            _ = Glibc.write(vrings[i].errFD, &one, 8)
        }
    }

    /// The host found ring `i` broken while serving it (called on the protocol thread).
    public func hostReportedBroken(_ i: Int, _ reason: String) { markBroken(i, reason) }

    /// Access to a ring the backend holds itself (no host): tests and simple loops.
    public func withQueue<R>(_ i: Int, _ body: (inout SplitQueue) throws -> R) rethrows -> R? {
        guard i < vrings.count, vrings[i].running, vrings[i].queue != nil else { return nil }
        return try body(&vrings[i].queue!)
    }

    // MARK: memory

    private func setMemoryTable(_ regions: [MemoryRegionDescriptor], fds: [Int32]) throws(VhostUserError) {
        // Rings keep pointers into the old mapping: take them back first.
        let wasStarted = vrings.indices.filter { vrings[$0].started }
        for i in wasStarted { stop(i) }
        memory?.retire()
        memory = nil
        let mapping: GuestMemoryMapping
        do { mapping = try GuestMemoryMapping.map(regions, fds: fds) } catch {
            for i in wasStarted { markBroken(i, "memory table refused") }
            throw error
        }
        memory = mapping
        var lines: [String] = []
        for r in mapping.regions {
            lines.append("gpa 0x\(String(r.guestPhysicalAddress, radix: 16)) size 0x\(String(r.size, radix: 16))")
        }
        log("\(config.name): memory table of \(mapping.count) region(s): \(lines.joined(separator: ", "))")
        for i in wasStarted where vrings[i].kickFD >= 0 { try? start(i) }
    }

    // MARK: teardown

    /// Stops every ring and forgets the device state (RESET_OWNER / RESET_DEVICE).
    public func reset() {
        for i in vrings.indices {
            stop(i)
            closeFD(&vrings[i].kickFD); closeFD(&vrings[i].callFD); closeFD(&vrings[i].errFD)
            vrings[i] = Vring()
        }
        memory?.retire()
        memory = nil
        ackedFeatures = 0; ackedProtocolFeatures = 0; featuresSet = false; protocolFeaturesSet = false; hasOwner = false
    }

    /// The front-end went: everything torn down, ready for the next connection.
    public func disconnect() { reset() }
}
