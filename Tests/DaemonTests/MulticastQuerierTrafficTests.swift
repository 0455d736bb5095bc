// MulticastQuerierTrafficTests: the snooping switch as the LAN's only querier
// (`multicast-querier = true`). Two namespace hosts behind tapbridge ports, no multicast
// router anywhere: h0 joins 239.1.2.3 with an ordinary socket and keeps it open; both count on
// an AF_PACKET socket the IGMP and MLD general queries that reach their interface. With a
// membership interval of 5 s (robustness 2 x query interval 2 s + response 1 s) the group is
// only still in `tapbridge mdb` 15 s later because h0's kernel answers our queries. IPv6 is on
// in h0, so its kernel's solicited-node group (ff02::1:ff…) is kept alive by our MLD queries
// the same way.
import Foundation
import Testing
import TestSupport

/// `DIR NAME GROUP JOIN`: joins GROUP on eth0 if JOIN is "join", then counts IGMP and MLD
/// queries arriving on eth0, rewriting DIR/count-NAME ({"igmp": n, "mld": n, "igmp-SRC": n})
/// as they come, until DIR/stop exists (120 s at most). Writes DIR/ready-NAME once listening.
/// `querier DIR SRC_MAC SRC_IP`: an IGMPv3 general query from SRC_IP every 0.5 s until DIR/quiet.
private let querierTool = #"""
import json, os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
if sys.argv[1] == "querier":
    d, src, sip = sys.argv[2], sys.argv[3], sys.argv[4]
    m = struct.pack("!BBH4sBBH", 0x11, 10, 0, bytes(4), 2, 2, 0)
    m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x46, 0xC0, 24 + len(m), 0, 0, 1, 2, 0, socket.inet_aton(sip),
                     socket.inet_aton("224.0.0.1")) + b"\x94\x04\x00\x00"
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    f = b"\x01\x00\x5e\x00\x00\x01" + bytes.fromhex(src.replace(":", "")) + b"\x08\x00" + ip + m
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    end = time.time() + 120
    while time.time() < end and not os.path.exists(os.path.join(d, "quiet")):
        s.send(f)
        time.sleep(0.5)
    sys.exit(0)
d, name, group, join = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "join"
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
raw.bind(("eth0", 0))
raw.settimeout(0.2)
if join:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = [l.split()[3].split("/")[0] for l in os.popen("ip -4 -o addr show dev eth0") if " inet " in l][0]
    u.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(addr))
open(os.path.join(d, "ready-" + name), "w").close()
counts, end = {"igmp": 0, "mld": 0}, time.time() + 120
def publish():
    tmp = os.path.join(d, "tmp-" + name)
    with open(tmp, "w") as f: json.dump(counts, f)
    os.rename(tmp, os.path.join(d, "count-" + name))
publish()
while time.time() < end and not os.path.exists(os.path.join(d, "stop")):
    try: data, a = raw.recvfrom(65535)
    except socket.timeout: continue
    if a[2] == socket.PACKET_OUTGOING: continue
    t = data[12:14]
    if t == b"\x08\x00" and len(data) >= 14 + 24 + 12 and data[23] == 2:
        if data[14 + (data[14] & 15) * 4] == 0x11:
            counts["igmp"] += 1
            k = "igmp-" + socket.inet_ntoa(data[26:30])
            counts[k] = counts.get(k, 0) + 1
            publish()
    elif t == b"\x86\xdd" and len(data) >= 14 + 40 + 8 + 28 and data[20] == 0 and data[54] == 58:
        if data[62] == 130: counts["mld"] += 1; publish()
print(json.dumps(counts))
"""#

@Suite struct MulticastQuerierTraffic {
    @Test func ourQueriesKeepAMembershipAliveWithoutARouter() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            try t.exec(h.namespaces[0], ["sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6"])
            let dir = FileManager.default.temporaryDirectory.path + "/\(t.tag)-querier"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let tool = dir + "/tool.py"
            try querierTool.write(toFile: tool, atomically: true, encoding: .utf8)
            t.onCleanup { try? FileManager.default.removeItem(atPath: dir) }
            let d = try DaemonProcess(t, config: """
                [[bridges]]
                name = "br0"
                [bridges.learning-switch]
                multicast-querier = true
                multicast-querier-address = "198.18.0.100"
                multicast-query-interval = 2
                multicast-query-response-interval = 1
                multicast-robustness = 2

                """ + h.portTables())
            let hosts = (0..<2).map { i in
                Thread.detachNewThreadWithResult {
                    (try? t.exec(h.namespaces[i], ["python3", tool, dir, "h\(i)", "239.1.2.3", i == 0 ? "join" : "no"], timeout: 150).stdout) ?? ""
                }
            }
            defer { _ = FileManager.default.createFile(atPath: dir + "/stop", contents: nil); for x in hosts { _ = x.wait() } }

            func queries(_ i: Int) -> (igmp: Int, mld: Int) {
                guard let data = FileManager.default.contents(atPath: dir + "/count-h\(i)"),
                      let c = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else { return (0, 0) }
                return (c["igmp"] ?? 0, c["mld"] ?? 0)
            }
            func groups() -> [String] {
                guard let r = try? cliJSON(d, ["mdb", "br0"]), let entries = r["entries"] as? [[String: Any]] else { return ["?"] }
                return entries.filter { $0["port"] as? String == h.macvtaps[0] }.compactMap { $0["group"] as? String }.sorted()
            }
            func counter(_ name: String) -> Int {
                let handlers = (try? cliJSON(d, ["stats"]))?["handlers"] as? [[String: Any]] ?? []
                return handlers.first { $0["counter"] as? String == name }?["value"] as? Int ?? -1
            }
            #expect(waitUntil(30) { groups().contains("239.1.2.3") }, "join not snooped: \(groups())")
            // Three membership intervals (5 s each) with nobody but us querying.
            let joined = Date()
            while Date().timeIntervalSince(joined) < 15 { usleep(500_000) }
            let after = groups()
            #expect(after.contains("239.1.2.3"), "membership lost without a querier: \(after)\n\(d.log)")
            #expect(after.contains { $0.hasPrefix("ff02::1:ff") }, "h0's solicited-node group not kept by MLD queries: \(after)")
            // Both hosts heard our IGMP and MLD queries (startup 2, then one each 2 s).
            #expect(waitUntil(30) { (0..<2).allSatisfy { queries($0).igmp >= 3 && queries($0).mld >= 3 } },
                    "queries at the hosts: \(queries(0)), \(queries(1))")
            let sent = counter("mcast_queries_sent")
            #expect(sent >= 12 && counter("mcast_queries_refused") == 0, "sent \(sent)")
            print("multicast querier: h0 heard \(queries(0)), h1 \(queries(1)); sent \(sent); mdb h0 \(after)")
            #expect(d.log.contains("multicast querier on"))
            #expect(d.stop() == 0)
        }
    }

    /// Election on the wire: h1 queries from 198.18.0.2, lower than our 198.18.0.100, so our
    /// IGMP queries stop (MLD ones go on); when h1 falls silent ours resume within the other
    /// querier present interval (2 x 2 + 0.5 = 4.5 s).
    @Test func aLowerAddressedQuerierSilencesOursUntilItStops() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let dir = FileManager.default.temporaryDirectory.path + "/\(t.tag)-election"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let tool = dir + "/tool.py"
            try querierTool.write(toFile: tool, atomically: true, encoding: .utf8)
            t.onCleanup { try? FileManager.default.removeItem(atPath: dir) }
            let d = try DaemonProcess(t, config: """
                [[bridges]]
                name = "br0"
                [bridges.learning-switch]
                multicast-querier = true
                multicast-querier-address = "198.18.0.100"
                multicast-query-interval = 2
                multicast-query-response-interval = 1

                """ + h.portTables())
            let listener = Thread.detachNewThreadWithResult {
                (try? t.exec(h.namespaces[0], ["python3", tool, dir, "h0", "239.1.2.3", "no"], timeout: 150).stdout) ?? ""
            }
            defer { _ = FileManager.default.createFile(atPath: dir + "/stop", contents: nil); _ = listener.wait() }
            func ours() -> Int {
                guard let data = FileManager.default.contents(atPath: dir + "/count-h0"),
                      let c = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else { return 0 }
                return c["igmp-198.18.0.100"] ?? 0
            }
            #expect(waitUntil(30) { ours() >= 1 }, "no query of ours reached h0")
            let other = Thread.detachNewThreadWithResult {
                (try? t.exec(h.namespaces[1], ["python3", tool, "querier", dir, h.macs[1], "198.18.0.2"], timeout: 150)) != nil
            }
            defer { _ = FileManager.default.createFile(atPath: dir + "/quiet", contents: nil); _ = other.wait() }
            #expect(waitUntil(30) { d.log.contains("a lower-addressed querier is present") }, "no yield: \(d.log)")
            let atYield = ours()
            let since = Date()
            while Date().timeIntervalSince(since) < 6 { usleep(500_000) }   // three of our intervals
            #expect(ours() <= atYield + 1, "still querying: \(atYield) -> \(ours())")
            _ = FileManager.default.createFile(atPath: dir + "/quiet", contents: nil)
            #expect(waitUntil(30) { d.log.contains("no other querier heard; querying again") }, "\(d.log)")
            #expect(waitUntil(30) { ours() >= atYield + 2 }, "did not resume: \(ours())")
            #expect(d.stop() == 0)
        }
    }
}

/// Polls `condition` every 100 ms for up to `timeout` seconds.
private func waitUntil(_ timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(100_000)
    }
    return condition()
}

private final class ResultThread<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?
    init(_ body: @escaping @Sendable () -> T) { Thread { self.result = body(); self.done.signal() }.start() }
    func wait() -> T? { done.wait(); done.signal(); return result }
}

extension Thread {
    fileprivate static func detachNewThreadWithResult<T>(_ body: @escaping @Sendable () -> T) -> ResultThread<T> { ResultThread(body) }
}
