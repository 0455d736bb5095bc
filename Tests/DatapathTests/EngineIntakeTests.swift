// EngineIntakeTests: what the engine refuses at ingress, before any handler runs, on ports fed
// through socketpairs (no namespaces needed): datagrams above the port's max frame or cut short
// by the buffer, empty datagrams, frames that would leave as runts, invalid source addresses,
// stream connections that end or stall mid-frame.
import Foundation
import Testing
@testable import Datapath
import Frames
import TestSupport

/// A datagram or stream test port over one socketpair end, with its own max frame.
final class SocketTestPort: Datapath.Port, @unchecked Sendable {
    let name: String
    let kind = "test-socket"
    let framing: Framing
    let maxFrameSize: Int
    let settings: PortSettings
    private var given: Int32?
    init(name: String, descriptor: Int32, framing: Framing = .datagram, maxFrameSize: Int = 1518,
         settings: PortSettings = PortSettings()) {
        self.name = name; self.framing = framing; self.maxFrameSize = maxFrameSize; self.settings = settings
        given = descriptor
    }
    var vnetHeaderSize: Int { 0 }
    var transmitOffloads: VirtioNetOffloads { [] }
    func openQueue(_ index: Int) throws -> Int32? { defer { given = nil }; return given }
    func queueFailed(_ index: Int, errno: Int32) -> PortFailureAction { .disconnect }
}

/// An Ethernet frame of `size` bytes: broadcast, from `source`, EtherType 0x88B5 (local
/// experimental), payload bytes counting up.
func testFrame(_ size: Int, source: [UInt8] = [0x02, 0, 0, 0, 0, 0x99], etherType: UInt16 = 0x88B5) -> [UInt8] {
    var f: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] + source + [UInt8(etherType >> 8), UInt8(etherType & 0xff)]
    while f.count < size { f.append(UInt8(truncatingIfNeeded: f.count)) }
    return Array(f.prefix(size))
}

/// Sizes of the datagrams that arrive on `fd` within `timeout` seconds of quiet.
func datagramSizes(_ fd: Int32, quiet timeout: Double = 0.5) -> [Int] {
    var sizes: [Int] = []
    var buf = [UInt8](repeating: 0, count: 300_000)
    while true {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return sizes }
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n >= 0 { sizes.append(n) } else if errno != EAGAIN && errno != EINTR { return sizes }
    }
}

/// Sends `bytes` as one datagram on `fd`; true if the socket took it whole.
@discardableResult
func sendDatagram(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == bytes.count
}

/// Polls the engine until `done` holds for the port's statistics (at most 30 s: it returns as
/// soon as they do, and a loaded CI machine under ASan/TSan can take seconds).
func waitForStats(_ engine: Engine, _ id: PortID, _ done: (PortStatistics) -> Bool) -> PortStatistics? {
    var last: PortStatistics?
    for _ in 0..<1500 {
        last = engine.snapshot().bridge("br")?.port(id)
        if let s = last, done(s) { return s }
        usleep(20_000)
    }
    return last
}

/// A running one-worker hub with port "in" (a SocketTestPort of `framing` and `maxFrame`) and a
/// datagram port "out"; `body` gets the engine, the bridge, the two port IDs and the test's ends.
func withIntakeHub(framing: Framing = .datagram, maxFrame: Int = 1518, inSettings: PortSettings = PortSettings(),
                   outSettings: PortSettings = PortSettings(), tweak: (inout EngineConfiguration) -> Void = { _ in },
                   _ body: (Engine, Bridge, PortID, PortID, Int32, Int32) throws -> Void) throws {
    var a: [Int32] = [0, 0], b: [Int32] = [0, 0]
    let type = framing == .datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
    #expect(socketpair(AF_UNIX, type, 0, &a) == 0)
    #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &b) == 0)
    var big: Int32 = 1 << 20
    for fd in [a[1], b[1]] {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, socklen_t(4))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(4))
    }
    defer { close(a[1]); close(b[1]) }
    let engine = makeEngine(tweak)
    let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]))
    let inID = try bridge.attach(SocketTestPort(name: "in", descriptor: a[0], framing: framing, maxFrameSize: maxFrame,
                                                settings: inSettings))
    let outID = try bridge.attach(SocketTestPort(name: "out", descriptor: b[0], maxFrameSize: 65535, settings: outSettings))
    try engine.start()
    defer { engine.stop() }
    try body(engine, bridge, inID, outID, a[1], b[1])
}

@Suite(.serialized)
struct EngineIntakeTests {
    /// max-frame was not enforced on datagram ports, and a datagram longer than the engine's
    /// buffer was cut to the buffer's size and forwarded. Both are dropped as too-big now.
    @Test func datagramsAboveMaxFrameOrTheBufferAreDroppedNotCut() throws {
        try withIntakeHub { engine, _, inID, _, peer, out in
            #expect(sendDatagram(peer, testFrame(1518)))
            #expect(sendDatagram(peer, testFrame(1519)))
            #expect(sendDatagram(peer, testFrame(70_000)))
            #expect(sendDatagram(peer, testFrame(100_000)))
            #expect(sendDatagram(peer, testFrame(60)))
            let s = waitForStats(engine, inID) { $0.rxFrames + $0.drops(.tooBig) >= 5 }
            #expect(s?.rxFrames == 2, "\(String(describing: s))")
            #expect(s?.drops(.tooBig) == 3, "\(String(describing: s))")
            #expect(datagramSizes(out) == [1518, 60])
        }
    }

    /// Each zero-length datagram was taken as end of file: the port went down and was
    /// reconnected (or removed). It is a malformed frame now; the port stays up and forwards.
    @Test func emptyDatagramsAreMalformedFramesNotEndOfFile() throws {
        let events = EventLog()
        try withIntakeHub(tweak: { c in c.onEvent = { events.add($0) }; c.log = { events.log($0, $1) } }) { engine, _, inID, _, peer, out in
            for _ in 0..<50 { #expect(sendDatagram(peer, [])) }
            #expect(sendDatagram(peer, testFrame(64)))
            let s = waitForStats(engine, inID) { $0.rxFrames >= 1 && $0.drops(.malformed) >= 50 }
            #expect(s?.drops(.malformed) == 50, "\(String(describing: s))")
            #expect(s?.rxFrames == 1 && s?.connected == true, "\(String(describing: s))")
            #expect(datagramSizes(out) == [64])
            #expect(!events.all.contains { if case .portDisconnected = $0 { return true }; if case .portRemoved = $0 { return true }; return false },
                    "\(events.all)")
            #expect(events.logLines.filter { $0.contains("in") && $0.contains("end of file") }.isEmpty, "\(events.logLines)")
        }
    }

    /// A trunk port's 16-byte frame tagged VLAN 10 (MACs and the tag, no EtherType) left an
    /// access port of VLAN 10 as a 12-byte frame. It is malformed at ingress now; a whole tagged
    /// frame still leaves untagged.
    @Test func aTaggedFrameTooShortToUntagIsDroppedNotSentAsARunt() throws {
        var a: [Int32] = [0, 0], b: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &a) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &b) == 0)
        defer { close(a[1]); close(b[1]) }
        let engine = makeEngine()
        let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([VLANClassifier()]))
        let trunk = try bridge.attach(SocketTestPort(name: "trunk", descriptor: a[0], settings:
            PortSettings(vlan: .trunk(allowed: VLANSet([10]), native: nil))))
        let access = try bridge.attach(SocketTestPort(name: "access", descriptor: b[0], settings:
            PortSettings(vlan: .access(pvid: 10))))
        try engine.start()
        defer { engine.stop() }
        let whole = testFrame(64)
        let tag: [UInt8] = [0x81, 0x00, 0x00, 10]
        #expect(sendDatagram(a[1], Array(whole[0..<12]) + tag))                       // 16 bytes
        #expect(sendDatagram(a[1], Array(whole[0..<12]) + tag + [0x88]))              // 17 bytes
        #expect(sendDatagram(a[1], Array(whole[0..<12]) + tag + Array(whole[12...]))) // 68 bytes
        let s = waitForStats(engine, trunk) { $0.rxFrames + $0.drops(.malformed) >= 3 }
        #expect(s?.drops(.malformed) == 2, "\(String(describing: s))")
        #expect(datagramSizes(b[1]) == [64], "only the whole frame leaves, untagged")
        let out = waitForStats(engine, access) { $0.txFrames >= 1 }
        #expect(out?.txFrames == 1 && out?.totalDrops == 0, "\(String(describing: out))")
    }

    /// Frames from a multicast, broadcast or all-zero source MAC were forwarded (and could be
    /// learned). The Linux bridge drops them; so does the engine now, before any handler.
    @Test func framesFromAnInvalidSourceMACAreDropped() throws {
        try withIntakeHub { engine, _, inID, _, peer, out in
            #expect(sendDatagram(peer, testFrame(60, source: [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01])))  // multicast
            #expect(sendDatagram(peer, testFrame(60, source: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])))  // broadcast
            #expect(sendDatagram(peer, testFrame(60, source: [0, 0, 0, 0, 0, 0])))                    // all zero
            #expect(sendDatagram(peer, testFrame(61, source: [0, 0, 0, 0, 0, 1])))                    // valid
            #expect(sendDatagram(peer, testFrame(62, source: [0x02, 0, 0, 0, 0, 0])))                 // valid
            let s = waitForStats(engine, inID) { $0.rxFrames + $0.drops(.invalidSource) >= 5 }
            #expect(s?.drops(.invalidSource) == 3, "\(String(describing: s))")
            #expect(s?.rxFrames == 2, "\(String(describing: s))")
            #expect(datagramSizes(out) == [61, 62])
        }
    }

    /// A stream peer that closed mid-frame was logged as end of file only; the lost frame is
    /// counted as truncated now, and the log says how much of it arrived.
    @Test func aFrameCutByTheStreamPeerClosingIsCounted() throws {
        let events = EventLog()
        try withIntakeHub(framing: .lengthPrefixed, tweak: { c in c.onEvent = { events.add($0) }; c.log = { events.log($0, $1) } }) {
            engine, _, inID, _, peer, out in
            let whole = testFrame(60)
            let bytes: [UInt8] = [0, 0, 0, 60] + whole + [0, 0, 0, 60] + whole[0..<20]
            #expect(bytes.withUnsafeBytes { write(peer, $0.baseAddress, $0.count) } == bytes.count)
            _ = waitForStats(engine, inID) { $0.rxFrames >= 1 }
            shutdown(peer, Int32(SHUT_RDWR))
            #expect(events.wait { if case .portDisconnected = $0 { return true }; return false })
            let s = waitForStats(engine, inID) { $0.drops(.truncated) >= 1 }
            #expect(s?.drops(.truncated) == 1 && s?.rxFrames == 1, "\(String(describing: s))")
            #expect(datagramSizes(out) == [60])
            #expect(events.logLines.contains { $0.contains("peer closed mid-frame") && $0.contains("20 of 60 bytes") }, "\(events.logLines)")
        }
    }

    /// A peer dribbling a frame one byte at a time held a stream server port for as long as it
    /// liked. Holding a partial frame longer than `partialFrameTimeout` closes the connection
    /// (counted as truncated); a peer that is idle between whole frames is never closed.
    @Test func aStreamPeerStalledMidFrameIsClosedAnIdleOneIsNot() throws {
        let events = EventLog()
        let tweak: (inout EngineConfiguration) -> Void = { c in
            c.partialFrameTimeout = 1
            c.healthCheckInterval = 0.1
            c.onEvent = { events.add($0) }
            c.log = { events.log($0, $1) }
        }
        try withIntakeHub(framing: .lengthPrefixed, tweak: tweak) { engine, bridge, slowID, _, slow, out in
            var idle: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &idle) == 0)
            defer { close(idle[1]) }
            let idleID = try bridge.attach(SocketTestPort(name: "idle", descriptor: idle[0], framing: .lengthPrefixed))
            // The idle peer sends one whole frame, then nothing.
            let frame: [UInt8] = [0, 0, 0, 60] + testFrame(60)
            #expect(frame.withUnsafeBytes { write(idle[1], $0.baseAddress, $0.count) } == frame.count)
            _ = waitForStats(engine, idleID) { $0.rxFrames >= 1 }
            // The slow peer starts a frame and dribbles it, a byte every 0.1 s.
            let start = Date()
            var sent = 0
            func slowGone() -> Bool {
                events.all.contains { if case .portDisconnected(_, let p, _, _) = $0 { return p == slowID }; return false }
            }
            while !slowGone() && Date().timeIntervalSince(start) < 6 && sent < frame.count - 1 {
                if write(slow, [frame[sent]], 1) == 1 { sent += 1 }
                usleep(100_000)
            }
            let took = Date().timeIntervalSince(start)
            #expect(pollUntil(30) { slowGone() }, "the dribbling peer was closed")
            // Not before the timeout, and while it was still dribbling (a timer restarted by each
            // byte would close it only after the dribble stopped): no absolute upper bound, which
            // a loaded CI machine under ASan/TSan can overrun.
            #expect(took >= 0.9, "closed after \(took) s")
            #expect(sent < frame.count - 1, "closed while the peer was still dribbling (\(sent) bytes, \(took) s)")
            let s = waitForStats(engine, slowID) { $0.drops(.truncated) >= 1 }
            #expect(s?.drops(.truncated) == 1 && s?.connected == false, "\(String(describing: s))")
            // Idle for longer than the timeout by now, holding no partial frame: still attached.
            let i = engine.snapshot().bridge("br")?.port(idleID)
            #expect(i?.connected == true && i?.totalDrops == 0, "\(String(describing: i))")
            #expect(!events.all.contains { if case .portDisconnected(_, let p, _, _) = $0 { return p == idleID }; return false })
            #expect(datagramSizes(out) == [60])
        }
    }
}
