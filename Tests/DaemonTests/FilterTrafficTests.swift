// FilterTrafficTests: the filter judged against real frames between namespaces, through the
// daemon. A namespace plays the guest and writes crafted frames on a raw AF_PACKET socket (a
// rogue DHCP server among them); the hosts behind the other ports count what arrives with their
// own AF_PACKET sockets; the daemon's per-rule and per-port counters must agree exactly.
import Foundation
import Testing
import TestSupport

/// Sends or counts crafted UDP/IPv4 frames on eth0 of the namespace it runs in.
/// `send SRC_MAC DST_MAC SPEC...` where SPEC is `PORT:COUNT[:vlan|:paced]` (paced: 1 frame per
/// 0.8 ms) or `dhcp-offer:COUNT`;
/// `count SECONDS [IDLE]` prints a JSON object {udp-dst-port: frames} of what eth0 received
/// (stopping early once IDLE seconds pass without a frame after the first).
private let frameTool = #"""
import json, socket, struct, sys, time

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def frame(src, dst, sip, dip, sport, dport, payload, vlan=None):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(sip), socket.inet_aton(dip))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    if vlan: eth += struct.pack("!HH", 0x8100, vlan)
    return eth + b"\x08\x00" + ip + udp

if sys.argv[1] == "send":
    src, dst = sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    for spec in sys.argv[4:]:
        parts = spec.split(":")
        n = int(parts[1])
        for i in range(n):
            if parts[0] == "dhcp-offer":
                bootp = bytes([2, 1, 6, 0]) + struct.pack("!I", i) + bytes(232) + bytes([99, 130, 83, 99, 53, 1, 2, 255])
                s.send(frame(src, "ff:ff:ff:ff:ff:ff", "198.18.0.1", "255.255.255.255", 67, 68, bootp))
            else:
                vlan = 10 if parts[2:] == ["vlan"] else None
                s.send(frame(src, dst, "198.18.0.1", "198.18.0.2", 40000, int(parts[0]), struct.pack("!I", i) + bytes(18), vlan))
                if parts[2:] == ["paced"]: time.sleep(0.0008)
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind(("eth0", 0))
    s.settimeout(0.2)
    counts = {}
    end = time.time() + float(sys.argv[2])
    idle = float(sys.argv[3]) if len(sys.argv) > 3 else None
    last = None
    while time.time() < end:
        if idle and last and time.time() - last > idle: break
        try: data, addr = s.recvfrom(65535)
        except socket.timeout: continue
        last = time.time()
        if addr[2] == socket.PACKET_OUTGOING: continue
        off = 12
        while data[off:off + 2] in (b"\x81\x00", b"\x88\xa8"): off += 4
        if data[off:off + 2] != b"\x08\x00" or len(data) < off + 2 + 24 or data[off + 11] != 17: continue
        ihl = (data[off + 2] & 15) * 4
        dport = struct.unpack("!H", data[off + 2 + ihl + 2:off + 2 + ihl + 4])[0]
        counts[str(dport)] = counts.get(str(dport), 0) + 1
    print(json.dumps(counts))
"""#

/// Writes the frame tool for this topology (removed at clean-up); returns its path.
private func installFrameTool(_ t: Topology) throws -> String {
    let tool = FileManager.default.temporaryDirectory.path + "/\(t.tag)-frames.py"
    try frameTool.write(toFile: tool, atomically: true, encoding: .utf8)
    t.onCleanup { try? FileManager.default.removeItem(atPath: tool) }
    return tool
}

/// A daemon with bridge br0 = filter (judging host 0's port) + learning switch over `h`.
private func filterDaemon(_ t: Topology, _ h: Hosts, rules: [String]) throws -> DaemonProcess {
    try DaemonProcess(t, config: """
        [[bridges]]
        name = "br0"
        pipeline = ["filter", "learning-switch"]
        [bridges.filter]
        ports = ["\(h.macvtaps[0])"]
        rules = [\(rules.map { "\"\($0)\"" }.joined(separator: ", "))]

        """ + h.portTables())
}

@Suite struct FilterTraffic {
    /// h0 (the judged guest) sends known numbers of frames matching each rule; h1 is their
    /// destination, h2 the analyser that gets the mirror copies.
    @Test func everyActionCountsExactlyOnRealFrames() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let tool = try installFrameTool(t)
            let rules = [
                "deny @dhcp-server-guard",
                "count udp dst port 7001",
                "deny udp dst port 7002",
                "mirror \(h.macvtaps[2]) udp dst port 7003",
                "deny vlan 10 and udp dst port 7004",
                "limit 100pps udp dst port 7005",
            ]
            let d = try filterDaemon(t, h, rules: rules)
            // Every MAC learned first, so unicast frames are not flooded to the analyser.
            #expect(h.ping(1, h.addresses[0], count: 1) && h.ping(2, h.addresses[0], count: 1), "\(d.log)")

            let counters = (1...2).map { i in
                Background.detached { (try? t.exec(h.namespaces[i], ["python3", tool, "count", "4"], timeout: 30).stdout) ?? "" }
            }
            usleep(800_000)   // the counters' sockets are bound
            try t.exec(h.namespaces[0], ["python3", tool, "send", h.macs[0], h.macs[1],
                                         "dhcp-offer:5", "7001:20", "7002:20", "7003:20", "7004:20:vlan", "7005:300"])
            let got = try counters.map { c -> [String: Int] in
                let out = c.wait() ?? ""
                return try #require(try json(out) as? [String: Int], "counter output: \(out)")
            }
            let dest = got[0], analyser = got[1]

            let list = try cliJSON(d, ["filter", "list"])
            let filter = try #require((list["filters"] as? [[String: Any]])?.first, "\(list)")
            let packets = try #require(filter["rules"] as? [[String: Any]]).map { ($0["packets"] as? Int) ?? -1 }
            let stats = try cliJSON(d, ["stats", h.macvtaps[0]])
            let port = try #require((stats["ports"] as? [[String: Any]])?.first, "\(stats)")
            let drops = port["drops"] as? [String: Int] ?? [:]
            let limited = drops["rate-limited"] ?? 0
            let summary = "rules \(packets), drops \(drops), destination got \(dest), analyser got \(analyser)"
            print("filter traffic: \(summary)")
            let message = summary + "\n" + d.log

            #expect(Array(packets.prefix(5)) == [5, 20, 20, 20, 20], "\(message)")
            #expect(drops["filtered"] == 5 + 20 + 20, "\(message)")
            #expect(dest["7001"] == 20 && dest["7002"] == nil && dest["7003"] == 20 && dest["7004"] == nil, "\(message)")
            #expect(dest["68"] == nil && analyser["68"] == nil, "a rogue DHCP offer got through: \(message)")
            // 300 frames in a burst against 100 frames/s (one second's burst): most are
            // dropped, and every one is either delivered or counted as rate-limited.
            #expect(limited > 0 && limited < 300, "\(message)")
            #expect((dest["7005"] ?? 0) + limited == 300, "\(message)")
            // The analyser sees the mirrored frames and nothing else of the guest's unicast.
            #expect(analyser["7003"] == 20 && analyser["7001"] == nil && analyser["7005"] == nil, "\(message)")
            #expect(d.stop() == 0)
        }
    }
}

extension FilterTraffic {
    /// Numbered frames cross the daemon while `tapbridge filter replace` swaps the rule set
    /// between allowing and denying them, many times: each frame is either delivered or
    /// counted as denied, by exactly one complete rule set; none is lost otherwise.
    @Test func liveSwapsUnderTrafficLoseNothing() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let tool = try installFrameTool(t)
            let d = try filterDaemon(t, h, rules: ["count udp dst port 7010"])
            #expect(h.ping(1, h.addresses[0], count: 1), "\(d.log)")
            let sent = 3000, chunks = 20
            let counter = Background.detached {
                (try? t.exec(h.namespaces[1], ["python3", tool, "count", "60", "4"], timeout: 90).stdout) ?? ""
            }
            usleep(800_000)
            // Each chunk of paced frames is under way while the swap to the next rule set
            // happens, so every swap meets traffic however slow this machine is.
            var swaps = 0, senderOK = true
            for i in 0..<chunks {
                let chunk = Background.detached {
                    (try? t.exec(h.namespaces[0], ["python3", tool, "send", h.macs[0], h.macs[1], "7010:\(sent / chunks):paced"],
                                 timeout: 30)) != nil
                }
                usleep(100_000)   // about the middle of the chunk here
                let rule = i % 2 == 0 ? "deny udp dst port 7010" : "count udp dst port 7010"
                if (try? cli(d, ["filter", "replace", "br0", "--rule", rule]))?.status == 0 { swaps += 1 }
                senderOK = senderOK && chunk.wait() == true
            }
            #expect(senderOK, "the sender failed")
            let got = try #require(try json(counter.wait() ?? "") as? [String: Int], "no receiver counts")
            let stats = try cliJSON(d, ["stats", h.macvtaps[0]])
            let port = try #require((stats["ports"] as? [[String: Any]])?.first, "\(stats)")
            let denied = (port["drops"] as? [String: Int])?["filtered"] ?? 0
            let delivered = got["7010"] ?? 0
            let list = try cliJSON(d, ["filter", "list"])
            let generation = (list["filters"] as? [[String: Any]])?.first?["generation"] as? Int ?? -1
            print("live swaps: \(swaps) swaps (generation \(generation)), \(sent) sent, \(delivered) delivered, \(denied) denied")
            #expect(swaps == 20 && generation == 20, "\(d.log)")
            #expect(delivered > 0 && denied > 0, "the swaps did not interleave with the traffic")
            #expect(delivered + denied == sent, "lost: \(sent - delivered - denied)\n\(d.log)")
            #expect(d.stop() == 0)
        }
    }
}

/// A thread whose result can be waited for.
private final class Background<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?
    static func detached(_ body: @escaping @Sendable () -> T) -> Background<T> {
        let t = Background<T>()
        Thread { t.result = body(); t.done.signal() }.start()
        return t
    }
    func wait() -> T? { done.wait(); return result }
}
