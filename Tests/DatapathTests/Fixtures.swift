// Fixtures: hosts in namespaces behind veth pairs whose root-namespace ends carry passthru
// macvtaps, and helpers to run an engine over those macvtaps.
import Foundation
import Testing
@testable import Datapath
import Frames
import Tap
import VirtioNet
import TestSupport

struct Host {
    var namespace: String
    var address: String
    /// The macvtap in the root namespace that the engine opens.
    var macvtap: String
    /// The root-namespace veth end the macvtap sits on.
    var lower: String
}

/// Adds host number `n` (address 198.18.0.n) to `t`.
func addHost(_ t: Topology, _ n: Int) throws -> Host {
    let ns = try t.addNamespace("h\(n)")
    let inner = t.ifname("i\(n)"), outer = t.ifname("o\(n)"), mvt = t.ifname("m\(n)")
    try t.addVeth(outer, inner)
    try t.move(inner, to: ns, address: "198.18.0.\(n)/24")
    try run(["ip", "link", "set", outer, "up"])
    try run(["ip", "link", "add", "link", outer, "name", mvt, "type", "macvtap", "mode", "passthru"])
    t.track(link: mvt)
    try run(["ip", "link", "set", mvt, "up"])
    return Host(namespace: ns, address: "198.18.0.\(n)", macvtap: mvt, lower: outer)
}

/// Collects engine events for tests that wait for them.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [EngineEvent] = []
    private var lines: [String] = []
    func add(_ e: EngineEvent) { lock.withLock { events.append(e) } }
    func log(_ l: EngineLogLevel, _ s: String) { lock.withLock { lines.append("\(l): \(s)") } }
    var all: [EngineEvent] { lock.withLock { events } }
    var logLines: [String] { lock.withLock { lines } }
    /// Waits up to `timeout` seconds for an event matching `match`.
    func wait(timeout: Double = 30, _ match: (EngineEvent) -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if all.contains(where: match) { return true }
            usleep(20_000)
        }
        return false
    }
}

func makeEngine(workers: Int = 1, events: EventLog? = nil, _ tweak: (inout EngineConfiguration) -> Void = { _ in }) -> Engine {
    var c = EngineConfiguration(workers: workers)
    c.buffersPerWorker = 128
    if let events {
        c.onEvent = { events.add($0) }
        c.log = { events.log($0, $1) }
    }
    tweak(&c)
    return Engine(configuration: c)
}

/// A bridge named "br" flooding every frame (no handlers) between the hosts' macvtaps.
@discardableResult
func hub(_ engine: Engine, _ hosts: [Host], offloads: VirtioNetOffloads = .all) throws -> Bridge {
    let bridge = engine.addBridge(name: "br", pipeline: HandlerPipeline([]), offloads: offloads)
    for h in hosts { try bridge.attach(MacvtapPort(name: h.macvtap)) }
    return bridge
}

/// Two hosts bridged by a running one-worker hub engine that already forwards a ping.
func withRunningHub(_ body: (Topology, Engine, Bridge, Host, Host) throws -> Void) throws {
    try withTopology { t in
        let a = try addHost(t, 1), b = try addHost(t, 2)
        let engine = makeEngine()
        let bridge = try hub(engine, [a, b])
        try engine.start()
        defer { engine.stop() }
        #expect(try ping(a, b))
        try body(t, engine, bridge, a, b)
    }
}

func ping(_ from: Host, _ to: Host, count: Int = 3) throws -> Bool {
    try run(["ip", "netns", "exec", from.namespace, "ping", "-c", "\(count)", "-i", "0.2", "-W", "2", to.address],
            check: false, timeout: 20).succeeded
}

/// Runs a bounded iperf3 client in `client`'s namespace against a one-shot iperf3 server in
/// `server`'s (killed afterwards, and on cleanup if the test fails first); `options` are the
/// client's extra arguments.
func iperfRun(_ t: Topology, from client: Host, to server: Host, port: Int, seconds: Int, _ options: [String]) throws -> CommandResult {
    let srv = try BackgroundCommand(["ip", "netns", "exec", server.namespace, "iperf3", "-s", "-1", "-p", "\(port)"], cleanup: t)
    defer { srv.stop() }
    // Start the client once the server listens (a fixed pause lost the race on a busy machine).
    let listening = Date().addingTimeInterval(30)   // ends as soon as it listens
    while Date() < listening {
        let ss = try run(["ip", "netns", "exec", server.namespace, "ss", "-Hltn", "sport", "=", ":\(port)"], check: false, timeout: 30)
        if !ss.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { break }
        usleep(20_000)
    }
    return try run(["ip", "netns", "exec", client.namespace, "iperf3", "-c", server.address, "-p", "\(port)",
                    "-t", "\(seconds)", "--connect-timeout", "3000"] + options, check: false, timeout: Double(seconds) + 20)
}

/// Runs a bounded iperf3 TCP test from `client` to `server`; returns (sent, received) bytes and Gbit/s.
func iperf(_ t: Topology, from client: Host, to server: Host, seconds: Int = 3, port: Int = 5201) throws -> (sent: Double, received: Double, gbps: Double) {
    let r = try iperfRun(t, from: client, to: server, port: port, seconds: seconds, ["-J"])
    guard let obj = try? json(r.stdout) as? [String: Any], let end = obj["end"] as? [String: Any],
          let s = end["sum_sent"] as? [String: Any], let rcv = end["sum_received"] as? [String: Any] else {
        return (0, 0, 0)
    }
    let sent = (s["bytes"] as? Double) ?? 0
    let received = (rcv["bytes"] as? Double) ?? 0
    let bps = (rcv["bits_per_second"] as? Double) ?? 0
    return (sent, received, bps / 1e9)
}

/// iperf3 counts bytes written into the sender's socket, and read from the receiver's: at the
/// end they differ by what sat in socket buffers, so compare within that window.
func delivered(_ r: (sent: Double, received: Double, gbps: Double)) -> Bool {
    r.received > 0 && r.received >= r.sent - 16 * 1024 * 1024
}

/// Sends `request` on datagram socket `fd` every 0.3 s until a datagram for which `match` holds
/// comes back, or `timeout`. Resending matters: a freshly created host link drops what it
/// sends until linkwatch activates it, up to a second after `ip link set up`.
func datagramExchange(_ fd: Int32, _ request: [UInt8], timeout: Double = 4, match: ([UInt8]) -> Bool) -> [UInt8]? {
    var buf = [UInt8](repeating: 0, count: 70000)
    let end = Date().addingTimeInterval(timeout)
    var nextSend = Date()
    while Date() < end {
        if Date() >= nextSend {
            var r = request
            _ = send(fd, &r, r.count, 0)
            nextSend = Date().addingTimeInterval(0.3)
        }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 50) > 0 else { continue }
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 && match(Array(buf[0..<n])) { return Array(buf[0..<n]) }
    }
    return nil
}

/// Open descriptors of this process.
func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// Snapshot lookups that fail the test with a message instead of crashing the test runner (a
/// crash skips every clean-up and leaks namespaces and daemons).
struct MissingStatistics: Error, CustomStringConvertible {
    let what: String
    var description: String { "no statistics for \(what)" }
}

extension EngineSnapshot {
    func bridgeStats(_ name: String) throws -> BridgeStatistics {
        guard let b = bridge(name) else { throw MissingStatistics(what: "bridge '\(name)'") }
        return b
    }
}

extension BridgeStatistics {
    func stats(_ id: PortID) throws -> PortStatistics {
        guard let p = port(id) else { throw MissingStatistics(what: "port \(id)") }
        return p
    }
}
