// ImpairTrafficTests: the impair handler on real traffic between namespaces, through the
// daemon: ping RTT through a delay, loss shares within binomial bounds, burst loss in runs,
// reorder and duplicates seen in the receiver's sequence numbers, a rate measured by iperf3,
// and a second port of the same worker still forwarding while one port holds all it can.
// Seeds are fixed and every bound is wide (many standard deviations, tens of milliseconds), so
// a loaded CI machine does not make them flake; each wait is on an event with a deadline.
import Foundation
import Testing
import TestSupport

/// `send SRC_MAC DST_MAC COUNT [GAP_US]`: COUNT UDP frames to port 9000 with a 4-byte sequence
/// number, GAP_US microseconds apart (default 300).
/// `recv READY_FILE SECONDS IDLE`: creates READY_FILE once bound, then prints the received
/// sequence numbers as a JSON list (stops IDLE seconds after the last frame, or at SECONDS).
private let seqTool = #"""
import json, os, socket, struct, sys, time

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

if sys.argv[1] == "send":
    src, dst, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    gap = float(sys.argv[5]) / 1e6 if len(sys.argv) > 5 else 0.0003
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    eth = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00"
    for i in range(n):
        udp = struct.pack("!HHHH", 40000, 9000, 8 + 22, 0) + struct.pack("!I", i) + bytes(18)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2"))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        s.send(eth + ip + udp)
        if gap > 0: time.sleep(gap)
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind(("eth0", 0))
    s.settimeout(0.1)
    open(sys.argv[2], "w").close()
    end = time.time() + float(sys.argv[3])
    idle = float(sys.argv[4])
    last = None
    seqs = []
    while time.time() < end:
        if last and time.time() - last > idle: break
        try: data, addr = s.recvfrom(65535)
        except socket.timeout: continue
        if addr[2] == socket.PACKET_OUTGOING: continue
        if len(data) < 46 or data[23] != 17: continue
        ihl = (data[14] & 15) * 4
        if struct.unpack("!H", data[14 + ihl + 2:14 + ihl + 4])[0] != 9000: continue
        last = time.time()
        seqs.append(struct.unpack("!I", data[14 + ihl + 8:14 + ihl + 12])[0])
    print(json.dumps(seqs))
"""#

private final class Pending<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?
    init(_ body: @escaping @Sendable () -> T) {
        Thread { [self] in result = body(); done.signal() }.start()
    }
    func wait() -> T? { done.wait(); return result }
}

/// Impairment traffic helpers for hosts 0 (sender) and 1 (receiver) of `h`.
private struct SeqTraffic {
    let t: Topology
    let h: Hosts
    let tool: String

    init(_ t: Topology, _ h: Hosts) throws {
        self.t = t; self.h = h
        tool = FileManager.default.temporaryDirectory.path + "/\(t.tag)-seq.py"
        try seqTool.write(toFile: tool, atomically: true, encoding: .utf8)
        t.onCleanup { [tool] in try? FileManager.default.removeItem(atPath: tool) }
    }

    /// Sends `count` numbered frames from host 0 to host 1; returns the numbers host 1 got, in order.
    func run(count: Int, gapMicroseconds: Int = 300, idle: Double = 1.5) throws -> [Int] {
        let ready = FileManager.default.temporaryDirectory.path + "/\(t.tag)-ready-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: ready) }
        let (t, h, tool) = (self.t, self.h, self.tool)
        let receiver = Pending { (try? t.exec(h.namespaces[1], ["python3", tool, "recv", ready, "40", "\(idle)"], timeout: 60).stdout) ?? "" }
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: ready) && Date() < deadline { usleep(20_000) }
        try t.exec(h.namespaces[0], ["python3", tool, "send", h.macs[0], h.macs[1], "\(count)", "\(gapMicroseconds)"], timeout: 60)
        let out = receiver.wait() ?? ""
        return try #require(try json(out) as? [Int], "receiver output: \(out)")
    }
}

/// A daemon whose bridge runs impair then the learning switch over the hosts' ports.
private func impairDaemon(_ t: Topology, _ h: Hosts, impair: String = "") throws -> DaemonProcess {
    try DaemonProcess(t, config: """
        [[bridges]]
        name = "br0"
        pipeline = ["impair", "learning-switch"]
        \(impair)
        """ + h.portTables())
}

/// The least RTT in ms of `count` pings from host `from` to `to` (nil if any was lost). The
/// least, not the average: a delay adds to every ping, while a loaded CI machine's scheduling
/// stalls and the first ping's ARP only inflate some (an average base of 18.5 ms was seen).
private func minimumRTT(_ h: Hosts, from: Int, to: String, count: Int = 5) -> Double? {
    guard let r = try? run(["ip", "netns", "exec", h.namespaces[from], "ping", "-c", "\(count)", "-i", "0.2", "-W", "2", "-q", to],
                           check: false, timeout: 30), r.succeeded,
          let line = r.stdout.split(separator: "\n").first(where: { $0.contains("min/avg/max") }),
          let values = line.split(separator: "=").last?.trimmingCharacters(in: .whitespaces).split(separator: "/"),
          values.count >= 2 else { return nil }
    return Double(values[0])
}

@Suite(.serialized) struct ImpairTraffic {
    /// 50 ms on h1's port (egress: the echo requests leaving towards h1) adds about 50 ms to
    /// the RTT, set and cleared live over the control socket.
    @Test func delayRaisesPingRTTLive() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try impairDaemon(t, h)
            let base = try #require(minimumRTT(h, from: 0, to: h.addresses[1]), "\(d.log)")
            let set = try cli(d, ["impair", h.macvtaps[1], "delay", "50ms"])
            #expect(set.stdout.contains("delay 50ms"), "\(set)")
            let delayed = try #require(minimumRTT(h, from: 0, to: h.addresses[1]), "\(d.log)")
            #expect(delayed - base > 40 && delayed - base < 200, "RTT \(base) ms -> \(delayed) ms")
            // Jitter: a normal spread of 15 ms shows as ping's mdev (bounds wide for a busy host).
            try cli(d, ["impair", h.macvtaps[1], "delay", "50ms", "jitter", "15ms", "distribution", "normal", "seed", "1"])
            let spread = try run(["ip", "netns", "exec", h.namespaces[0], "ping", "-c", "20", "-i", "0.2", "-W", "2", "-q",
                                  h.addresses[1]], check: false, timeout: 30).stdout
            let stats = spread.split(separator: "\n").first { $0.contains("min/avg/max") }?
                .split(separator: "=").last?.trimmingCharacters(in: .whitespaces).split(separator: "/") ?? []
            let mdev = stats.count >= 4 ? Double(stats[3].split(separator: " ")[0]) : nil
            #expect(mdev.map { $0 > 5 && $0 < 40 } ?? false, "ping spread with 15 ms jitter: \(spread)")
            let shown = try cliJSON(d, ["impair", "show"])
            let first = try #require((shown["impairments"] as? [[String: Any]])?.first)
            #expect((first["counters"] as? [String: Any])?["delayed"] as? Int ?? 0 >= 5, "\(shown)")
            try cli(d, ["impair", "clear", h.macvtaps[1]])
            let after = try #require(minimumRTT(h, from: 0, to: h.addresses[1]))
            #expect(after < base + 30, "RTT after clear \(after) ms (before \(base) ms)")
            // A bad value is refused with the word at fault; nothing changes.
            let bad = try cli(d, ["impair", h.macvtaps[1], "delay", "50"], check: false)
            #expect(!bad.succeeded && bad.stderr.contains("delay must be a time with a unit"), "\(bad)")
            #expect(d.stop() == 0)
        }
    }

    /// 10 % random loss from the file (TOML keys), then Gilbert-Elliott bursts after a SIGHUP
    /// reload: the delivered share within a binomial bound, and losses in runs.
    @Test func lossSharesAndBurstsFromFileAndReload() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try impairDaemon(t, h, impair: """
                [[bridges.impair.ports]]
                port = "\(h.macvtaps[1])"
                loss = "10%"
                seed = 3

                """)
            #expect(h.ping(1, h.addresses[0], count: 1) || h.ping(1, h.addresses[0], count: 2), "\(d.log)")
            let traffic = try SeqTraffic(t, h)
            let n = 3000
            let got = try traffic.run(count: n)
            // Binomial(3000, 0.1): mean 300 lost, σ 16.4; ±6σ (and a little for the host).
            let lost = n - Set(got).count
            #expect(lost > 200 && lost < 410, "lost \(lost) of \(n)")

            let file = try String(contentsOfFile: d.configPath, encoding: .utf8)
                .replacingOccurrences(of: "loss = \"10%\"", with: "loss = \"gemodel 2% 25%\"")
            try file.write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("info reloaded")
            let bursty = Set(try traffic.run(count: n))
            // Runs of consecutive missing numbers: the model's mean run is 1/r = 4 frames.
            var runs: [Int] = []
            var current = 0
            for i in 0..<n {
                if bursty.contains(i) { if current > 0 { runs.append(current) }; current = 0 } else { current += 1 }
            }
            if current > 0 { runs.append(current) }
            let lostBursty = runs.reduce(0, +)
            let mean = Double(lostBursty) / Double(max(1, runs.count))
            // Expected share 2/27 = 7.4 % (222 frames); runs average 4 (random loss: ~1.1).
            #expect(lostBursty > 80 && lostBursty < 500, "lost \(lostBursty)")
            #expect(mean > 2.2, "mean run \(mean) over \(runs.count) runs")
            #expect(runs.contains { $0 >= 6 }, "no long run: \(runs)")
            let stats = try cli(d, ["stats", "--json"]).stdout
            #expect(stats.contains("impair-loss"), "\(stats)")
            #expect(d.stop() == 0)
        }
    }

    /// Reorder and duplicate: 30 % of frames skip a 20 ms delay, 10 % arrive twice.
    @Test func reorderAndDuplicateSeenBySequence() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try impairDaemon(t, h)
            #expect(h.ping(1, h.addresses[0], count: 1) || h.ping(1, h.addresses[0], count: 2), "\(d.log)")
            try cli(d, ["impair", h.macvtaps[1], "delay", "20ms", "reorder", "30%", "duplicate", "10%", "seed", "5"])
            let got = try SeqTraffic(t, h).run(count: 1000, gapMicroseconds: 1000)
            var highest = -1, late = 0
            for s in got { if s < highest { late += 1 }; highest = max(highest, s) }
            let duplicates = got.count - Set(got).count
            #expect(late > 50, "frames arriving after a later one: \(late)")
            #expect(duplicates > 40 && duplicates < 200, "duplicates \(duplicates)")
            #expect(Set(got).count > 950, "delivered \(Set(got).count) distinct of 1000")
            #expect(d.stop() == 0)
        }
    }

    /// iperf3 TCP through a 20 Mbit/s rate on the receiver's port measures about 20 Mbit/s.
    @Test func rateLimitsTCP() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try impairDaemon(t, h, impair: """
                [[bridges.impair.ports]]
                port = "\(h.macvtaps[1])"
                rate = "20mbit"
                limit = 100

                """)
            #expect(h.ping(0, h.addresses[1], count: 1) || h.ping(0, h.addresses[1], count: 2), "\(d.log)")
            let (_, received) = try iperf(h, from: 0, to: 1, seconds: 4)
            let mbit = Double(received) * 8 / 4 / 1e6
            // 20 ± 10 % on an idle machine; ±25 % here so CI load does not make it flake.
            #expect(mbit > 15 && mbit < 25, "measured \(mbit) Mbit/s through a 20 Mbit/s rate")
            #expect(d.stop() == 0)
        }
    }

    /// While every frame towards h1 is held for a second (and the worker's hold share fills),
    /// h0 and h2 still ping each other without delay: held frames never take the other port's
    /// buffers.
    @Test func otherPortForwardsWhileOneHoldsEverything() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try impairDaemon(t, h)
            #expect(h.ping(0, h.addresses[2], count: 1) || h.ping(0, h.addresses[2], count: 2), "\(d.log)")
            #expect(h.ping(1, h.addresses[0], count: 1) || h.ping(1, h.addresses[0], count: 2), "\(d.log)")
            try cli(d, ["impair", h.macvtaps[1], "delay", "1s", "limit", "100000"])
            let traffic = try SeqTraffic(t, h)
            let flood = Pending { (try? traffic.run(count: 20_000, gapMicroseconds: 0, idle: 2.5)) ?? [] }
            let rtt = minimumRTT(h, from: 2, to: h.addresses[0], count: 10)
            let delivered = flood.wait() ?? []
            #expect(rtt != nil && rtt! < 100, "h2 -> h0 RTT \(String(describing: rtt)) ms while h1's port holds")
            #expect(!delivered.isEmpty, "the held frames arrive in the end")
            let stats = try cli(d, ["stats", "--json"]).stdout
            #expect(stats.contains("impair-limit"), "the hold share was reached: \(stats)")
            #expect(d.stop() == 0)
        }
    }

    /// docs/examples/impair.toml starts (names mapped to this test's), its delay shows in a
    /// ping, and every `tapbridge impair` line of docs/impair.md runs as written.
    @Test func docsExampleAndCommandsWork() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let map = ["veth-a": h.veths[0], "veth-b": h.veths[1], "mvt-a": t.ifname("ma"), "mvt-b": t.ifname("mb")]
            let root = packageRoot()
            let example = try String(contentsOfFile: root + "/docs/examples/impair.toml", encoding: .utf8)
            let d = try DaemonProcess(t, config: ReadmeCommands.mapped(example, map))
            let rtt = try #require(minimumRTT(h, from: 0, to: h.addresses[1], count: 5), "\(d.log)")
            #expect(rtt > 25 && rtt < 200, "RTT \(rtt) ms through the example's 40 ms delay")
            let doc = try String(contentsOfFile: root + "/docs/impair.md", encoding: .utf8)
            let lines = ReadmeCommands.commandLines(doc).filter { $0.hasPrefix("tapbridge impair ") }
            #expect(lines.count >= 6, "\(lines)")
            for line in lines {
                let words = ReadmeCommands.mapped(line, map).split(separator: " ").dropFirst().map(String.init)
                let r = try cli(d, words, check: false)
                #expect(r.succeeded, "docs/impair.md line failed: \(line)\n\(r.stdout)\(r.stderr)")
            }
            #expect(d.stop() == 0)
        }
    }
}
