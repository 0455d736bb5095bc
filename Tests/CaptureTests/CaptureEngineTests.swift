// Captures through the Engine API over socketpair ports (exact frame counts, no namespaces),
// checked with tshark -r and tcpdump -r as independent readers.
import Foundation
import Testing
import Capture
@testable import Datapath
import Frames
import TestSupport

/// A running hub engine over datagram socketpairs: frames written to `peer[i]` enter port i.
final class SocketHub: @unchecked Sendable {
    let engine: Engine
    let bridge: Bridge
    var ids: [PortID] = []
    var peers: [Int32] = []

    init(ports: [String], workers: Int = 1, pipeline: HandlerPipeline = HandlerPipeline([])) throws {
        var c = EngineConfiguration(workers: workers)
        // The default: with fewer, a port past half of them out is held to a fair share of the
        // queue (Worker.send), which a test flooding one port at full speed would meet.
        c.buffersPerWorker = 512
        engine = Engine(configuration: c)
        bridge = engine.addBridge(name: "br", pipeline: pipeline)
        for name in ports {
            var pair: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &pair) == 0 else { throw CaptureError("socketpair", errno: errno) }
            var big: Int32 = 4 << 20
            setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &big, 4)
            peers.append(pair[1])
            ids.append(try bridge.attach(DescriptorPort(name: name, descriptor: pair[0])))
        }
        try engine.start()
    }

    deinit {
        engine.stop()
        peers.forEach { close($0) }
    }

    /// Sends `frame` into port `i`.
    func send(_ i: Int, _ frame: [UInt8]) {
        var f = frame
        _ = Glibc.send(peers[i], &f, f.count, 0)
    }

    /// Waits until `count` frames came out of port `i` (or `timeout` seconds); returns them.
    @discardableResult
    func receive(_ i: Int, count: Int, timeout: Double = 30) -> [[UInt8]] {
        var got: [[UInt8]] = []
        var buf = [UInt8](repeating: 0, count: 70000)
        let end = Date().addingTimeInterval(timeout)
        while got.count < count && Date() < end {
            var p = pollfd(fd: peers[i], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(peers[i], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { got.append(Array(buf[0..<n])) }
        }
        return got
    }
}

/// An Ethernet/IPv4/UDP frame from 198.18.0.1 to 198.18.0.2, `payload` bytes of `seq`.
func udpFrame(dstPort: UInt16, seq: UInt8, payload: Int = 32, vlan: UInt16? = nil) -> [UInt8] {
    var f: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01]
    if let v = vlan { f += [0x81, 0x00, UInt8(v >> 8), UInt8(v & 0xff)] }
    f += [0x08, 0x00]
    let total = 20 + 8 + payload
    f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, UInt8(seq), 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]
    f += [0x13, 0x88, UInt8(dstPort >> 8), UInt8(dstPort & 0xff), UInt8((8 + payload) >> 8), UInt8((8 + payload) & 0xff), 0, 0]
    f += [UInt8](repeating: seq, count: payload)
    return f
}

func tempPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "tbcap-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}

/// tshark's fields for every frame of `file`, one array per frame.
func tshark(_ file: String, _ fields: [String], filter: String? = nil) throws -> [[String]] {
    var argv = ["tshark", "-n", "-r", file, "-T", "fields", "-E", "separator=|"]
    for f in fields { argv += ["-e", f] }
    if let filter { argv += ["-Y", filter] }
    let r = try run(argv, timeout: 60)
    return r.stdout.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
}

/// The frame lines `tcpdump -n -r file` prints.
func tcpdumpLines(_ file: String) throws -> [Substring] {
    try run(["tcpdump", "-n", "-r", file], timeout: 60).stdout.split(separator: "\n")
}

/// Puts every frame in VLAN 10 (what a VLAN-aware switch does for an access port of VLAN 10).
final class InVLAN10: FrameHandler, @unchecked Sendable {
    let name = "vlan10"
    func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict { frame.vlan = 10; return .continue }
}

@Suite(.serialized)
struct CaptureEngineTests {
    @Test func pcapngBothDirectionsNamesPortsAndDirections() throws {
        let hub = try SocketHub(ports: ["vm-a", "vm-b"])
        let file = tempPath("both.pcapng")
        let s = try hub.engine.startCapture(bridge: hub.bridge, ports: hub.ids, direction: .both,
                                            destination: .file(path: file))
        for i in 0..<10 { hub.send(0, udpFrame(dstPort: 5001, seq: UInt8(i))) }
        #expect(hub.receive(1, count: 10).count == 10)
        let sum = s.stop()
        #expect(sum.captured == 20, "10 at vm-a's ingress + 10 at vm-b's egress")
        #expect(sum.dropped == 0)
        let rows = try tshark(file, ["frame.interface_name", "frame.packet_flags_direction", "frame.len", "udp.dstport"])
        #expect(rows.count == 20)
        #expect(rows.filter { $0.first == "vm-a" && $0[1] == "0x00000001" }.count == 10, "inbound at vm-a: \(rows)")
        #expect(rows.filter { $0.first == "vm-b" && $0[1] == "0x00000002" }.count == 10, "outbound at vm-b: \(rows)")
        #expect(rows.allSatisfy { $0[2] == "74" && $0[3] == "5001" })
        #expect(try tcpdumpLines(file).count == 20)
    }

    @Test func filterExpressionAndDirectionSelectFrames() throws {
        let hub = try SocketHub(ports: ["a", "b"], workers: 2)
        let file = tempPath("filtered.pcapng")
        let s = try hub.engine.startCapture(port: hub.ids[1], in: hub.bridge, direction: .egress, filter: "udp dst port 53",
                                            destination: .file(path: file))
        for i in 0..<12 { hub.send(0, udpFrame(dstPort: i % 3 == 0 ? 53 : 5001, seq: UInt8(i))) }
        #expect(hub.receive(1, count: 12).count == 12)
        let sum = s.stop()
        #expect(sum.captured == 4)
        #expect(sum.filteredOut == 8)
        let rows = try tshark(file, ["udp.dstport", "ip.id"])
        #expect(rows.map { $0[0] } == ["53", "53", "53", "53"])
        #expect(Set(rows.map { $0[1] }) == ["0x0000", "0x0003", "0x0006", "0x0009"])
    }

    @Test func badFilterIsRefusedWithLibpcapsMessage() throws {
        let hub = try SocketHub(ports: ["a", "b"])
        #expect(throws: EngineError.self) {
            try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, filter: "udp port banana",
                                        destination: .file(path: tempPath("x")))
        }
        let s = try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, destination: .file(path: tempPath("y")))
        #expect(throws: EngineError.self, "one session per port") {
            try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, destination: .file(path: tempPath("z")))
        }
        s.stop()
        // Once stopped, the port can be captured again.
        try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, destination: .file(path: tempPath("w"))).stop()
    }

    @Test func classicPcapWithCountStopsAfterCount() throws {
        let hub = try SocketHub(ports: ["a", "b"])
        let file = tempPath("count.pcap")
        var o = CaptureOptions(); o.format = .pcap; o.count = 5; o.snaplen = 50
        let s = try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, direction: .ingress,
                                            destination: .file(path: file), options: o)
        for i in 0..<9 { hub.send(0, udpFrame(dstPort: 7, seq: UInt8(i), payload: 100)) }
        #expect(s.wait(timeout: 30))
        let sum = s.stop()
        #expect(sum.captured == 5)
        let head = try Data(contentsOf: URL(fileURLWithPath: file)).prefix(4)
        #expect(Array(head) == [0x4d, 0x3c, 0xb2, 0xa1], "nanosecond pcap magic")
        let lines = try tcpdumpLines(file)
        #expect(lines.count == 5)
        let rows = try tshark(file, ["frame.len", "frame.cap_len"])
        #expect(rows.allSatisfy { $0 == ["142", "50"] }, "\(rows)")
    }

    @Test func rotationNamesFilesLikeTcpdump() throws {
        #expect(CaptureWriter.fileName("c.pcap", index: 0, maxFiles: nil) == "c.pcap")
        #expect(CaptureWriter.fileName("c.pcap", index: 2, maxFiles: nil) == "c.pcap2")
        #expect(CaptureWriter.fileName("c.pcap", index: 3, maxFiles: 12) == "c.pcap03")
        let hub = try SocketHub(ports: ["a", "b"])
        let file = tempPath("rot.pcapng")
        // 1000-byte frames, a new file past 2500 bytes, at most 3 files reused in turn.
        let s = try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, direction: .ingress,
                                            destination: .file(path: file, rotateBytes: 2500, maxFiles: 3))
        for i in 0..<12 {
            hub.send(0, udpFrame(dstPort: 9, seq: UInt8(i), payload: 958))
            hub.receive(1, count: 1)   // one at a time: the writer sees them in order
        }
        let sum = s.stop()
        #expect(sum.captured == 12)
        #expect(sum.files.count == 4 && Set(sum.files) == [file + "0", file + "1", file + "2"], "\(sum.files)")
        // Three frames per file (header + 2 frames < 2500 < header + 3 frames); file0 was reused
        // for frames 9..11.
        var ids: [[String]] = []
        for f in [file + "0", file + "1", file + "2"] { ids.append(try tshark(f, ["ip.id"]).map { $0[0] }) }
        #expect(ids == [["0x0009", "0x000a", "0x000b"], ["0x0003", "0x0004", "0x0005"], ["0x0006", "0x0007", "0x0008"]])
    }

    @Test func pipeToTcpdump() throws {
        let hub = try SocketHub(ports: ["a", "b"])
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["tcpdump", "-n", "-r", "-"]
        p.standardInput = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let s = try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, destination: .descriptor(fds[1]))
        for i in 0..<7 { hub.send(0, udpFrame(dstPort: 4242, seq: UInt8(i))) }
        hub.receive(1, count: 7)
        let sum = s.stop()
        close(fds[1])
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(sum.captured == 7)
        #expect(text.split(separator: "\n").filter { $0.contains("198.18.0.2.4242") }.count == 7, "\(text)")
    }

    @Test func fullQueueDropsAreCountedNeverBlocking() throws {
        let hub = try SocketHub(ports: ["a", "b"])
        let file = tempPath("drops.pcapng")
        var o = CaptureOptions()
        o.ringBytes = 1 << 16          // room for ~40 of these frames
        o.idleMicroseconds = 1_000_000   // a slow capture thread: it sleeps 1 s once its ring is empty
        let s = try hub.engine.startCapture(port: hub.ids[0], in: hub.bridge, direction: .ingress,
                                            destination: .file(path: file), options: o)
        // Port b is read while a is written, and the sender stays at most 64 frames ahead of
        // that reader (half of b's transmit queue): the test is about the capture ring, so b's
        // own queue must never be what drops, however slowly a loaded machine runs the reader.
        let received = Locked(0)
        let done = DispatchSemaphore(value: 0)
        Thread {
            var buf = [UInt8](repeating: 0, count: 2048)
            let end = Date().addingTimeInterval(30)
            while received.get() < 300 && Date() < end {
                var p = pollfd(fd: hub.peers[1], events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0 else { continue }
                if buf.withUnsafeMutableBytes({ recv(hub.peers[1], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {
                    received.set(received.get() + 1)
                }
            }
            done.signal()
        }.start()
        let sendDeadline = Date().addingTimeInterval(30)
        for i in 0..<300 {
            while i - received.get() >= 64 && Date() < sendDeadline { usleep(200) }
            hub.send(0, udpFrame(dstPort: 9, seq: UInt8(i & 255), payload: 1400))
        }
        done.wait()
        #expect(received.get() == 300, "forwarding loses nothing to the capture: \(hub.engine.snapshot().bridge("br")?.ports ?? [])")
        let sum = s.stop()
        #expect(sum.captured + sum.dropped == 300)
        #expect(sum.dropped > 0)
        #expect(try tshark(file, ["frame.len"]).count == Int(sum.captured))
    }

    @Test func egressCaptureShowsTheVLANTagThePortAdds() throws {
        // Port b is a trunk carrying VLAN 10 tagged; port a an access port of VLAN 10.
        let hub = try SocketHub(ports: [], pipeline: HandlerPipeline([InVLAN10()]))
        var pairs: [[Int32]] = []
        for _ in 0..<2 {
            var pair: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &pair) == 0)
            pairs.append(pair)
        }
        defer { close(pairs[0][1]); close(pairs[1][1]) }
        let a = try hub.bridge.attach(DescriptorPort(name: "a", descriptor: pairs[0][0],
                                                     settings: PortSettings(vlan: .access(pvid: 10))))
        let b = try hub.bridge.attach(DescriptorPort(name: "b", descriptor: pairs[1][0],
                                                     settings: PortSettings(vlan: .trunk(allowed: VLANSet([10]), native: nil))))
        _ = a
        let file = tempPath("vlan.pcapng")
        let s = try hub.engine.startCapture(port: b, in: hub.bridge, direction: .egress, destination: .file(path: file))
        var f = udpFrame(dstPort: 99, seq: 1)
        _ = Glibc.send(pairs[0][1], &f, f.count, 0)
        var buf = [UInt8](repeating: 0, count: 2048)
        var pfd = pollfd(fd: pairs[1][1], events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 30_000) == 1)
        let n = recv(pairs[1][1], &buf, buf.count, 0)
        #expect(n == f.count + 4)
        s.stop()
        let rows = try tshark(file, ["vlan.id", "udp.dstport", "frame.len"])
        #expect(rows == [["10", "99", "\(f.count + 4)"]])
    }
}
