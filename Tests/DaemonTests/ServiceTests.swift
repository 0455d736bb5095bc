// ServiceTests: the daemon as a service, with the built binary against the real kernel: the
// Prometheus endpoint scraped and parsed (values equal to the counters the daemon logs), the
// sd_notify messages on a test datagram socket, SIGKILL under traffic and a restart that
// reclaims or deletes exactly its own links, `run --check` on good and bad configs/hosts, the
// JSON log format, and the systemd unit's capability set.
import Foundation
import Frames
import Glibc
import Testing
import MetricsEndpoint
import TestSupport
@testable import Daemon

@Suite struct DaemonService {
    @Test func metricsEndpointMatchesCounters() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let config = """
                metrics = "127.0.0.1:0"
                [[bridges]]
                name = "lan"
                [bridges.filter]
                rules = ["count icmp"]
                \(h.portTables())
                """
            let d = try DaemonProcess(t, config: config, arguments: ["--log-format", "json"], waitReady: false)
            try d.waitFor("\"message\":\"running\"")
            let port = try #require(metricsPort(d.log), "no metrics address in the log:\n\(d.log)")
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")

            // Wait for the counters to settle (two equal scrapes), then stop and compare.
            var scrape: [Sample] = []
            for _ in 0..<20 {
                let a = try parseMetrics(httpGet(port: port, path: "/metrics").body)
                usleep(300_000)
                scrape = try parseMetrics(httpGet(port: port, path: "/metrics").body)
                // (families come out in the registry's dictionary order: compare as sets)
                let ports = { (x: [Sample]) in Set(x.filter { $0.name.hasPrefix("tapbridge_port_") }.map(\.description)) }
                if ports(a) == ports(scrape) { break }
            }
            // Protocol edges: unknown path, wrong method, garbage, oversized request.
            #expect(try httpGet(port: port, path: "/").status == 404)
            #expect(try httpGet(port: port, path: "/metrics", method: "POST").status == 405)
            #expect(try httpRaw(port: port, "NONSENSE\r\n\r\n").hasPrefix("HTTP/1.1 400"))
            #expect(try httpRaw(port: port, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n")
                .hasPrefix("HTTP/1.1 431"))
            #expect(d.stop() == 0)

            // The JSON log: every line one object with time, level, message.
            let lines = d.log.split(separator: "\n")
            for line in lines {
                let o = try #require(try? json(String(line)) as? [String: Any], "not a JSON object: \(line)")
                #expect(o["time"] is String && o["level"] is String && o["message"] is String, "\(line)")
            }
            let finals = lines.compactMap { try? json(String($0)) as? [String: String] }.filter { $0["message"] == "final counters" }
            for m in h.macvtaps {
                let f = try #require(finals.first { $0["port"] == m }, "no final counters for \(m):\n\(d.log)")
                let labels = ["bridge": "lan", "port": m]
                for (metric, key) in [("tapbridge_port_rx_frames_total", "rx-frames"), ("tapbridge_port_rx_bytes_total", "rx-bytes"),
                                      ("tapbridge_port_tx_frames_total", "tx-frames"), ("tapbridge_port_tx_bytes_total", "tx-bytes"),
                                      ("tapbridge_port_tx_errors_total", "tx-errors")] {
                    let v = try #require(scrape.value(metric, labels), "\(metric) \(labels) missing")
                    #expect(v == Double(f[key] ?? ""), "\(metric)\(labels) = \(v), log says \(f[key] ?? "nothing")")
                }
                #expect(try #require(scrape.value("tapbridge_port_rx_frames_total", labels)) >= 3)
                for (k, v) in f where k.hasPrefix("drop-") {
                    #expect(scrape.value("tapbridge_port_drops_total", labels.merging(["reason": String(k.dropFirst(5))]) { $1 })
                            == Double(v), "drops \(k) of \(m)")
                }
            }
            // Handler counters: FDB size, filter rule hits (3 echo requests + 3 replies at least).
            let sw = try #require(finals.first { $0["handler"] == "learning-switch" })
            #expect(scrape.value("tapbridge_fdb_entries", ["bridge": "lan", "handler": "learning-switch"]) == Double(sw["fdb_entries"] ?? ""))
            #expect(scrape.value("tapbridge_fdb_evicted_total", ["bridge": "lan", "handler": "learning-switch"]) == 0)
            let hits = try #require(scrape.first { $0.name == "tapbridge_filter_rule_packets_total" && $0.labels["rule"] == "0" })
            #expect(hits.value >= 6 && hits.labels["bridge"] == "lan", "\(hits)")
            // Worker metrics: one series per worker, frames counted.
            let workers = scrape.filter { $0.name == "tapbridge_worker_frames_total" }
            #expect(!workers.isEmpty && workers.map(\.value).reduce(0, +) >= 6)
            #expect(scrape.filter { $0.name == "tapbridge_worker_busy_seconds_total" }.count == workers.count)
            #expect(scrape.contains { $0.name == "tapbridge_worker_batches_total" })
            #expect(scrape.value("tapbridge_scrapes_total", [:]).map { $0 >= 1 } == true)
        }
    }

    @Test func metricsRefusesNonLoopback() throws {
        #expect(throws: DaemonError.self) { try MetricsAddress(parsing: "0.0.0.0:9417", allowRemote: false) }
        #expect(throws: DaemonError.self) { try MetricsAddress(parsing: "198.18.0.1:9417", allowRemote: false) }
        #expect(try MetricsAddress(parsing: "198.18.0.1:9417", allowRemote: true).port == 9417)
        #expect(try MetricsAddress(parsing: "[::1]:9417", allowRemote: false).isLoopback)
        #expect(try MetricsAddress(parsing: "localhost:1", allowRemote: false).host == "127.0.0.1")
        let r = try run([tapbridgeExecutable(), "run", "--config", "/nonexistent.toml", "--metrics", "0.0.0.0:9417"], check: false)
        #expect(r.status == 2 && r.stderr.contains("not a loopback address"), "\(r.stderr)")
    }

    @Test func serviceKeysParse() throws {
        let ok = try ConfigParser.parse("""
            log-format = "json"
            metrics = "[::1]:9417"
            state-dir = "/var/tmp/tb"
            [[bridges]]
            """, file: "t.toml")
        #expect(ok.logFormat == .json && ok.metrics == "[::1]:9417" && ok.stateDirectory == "/var/tmp/tb")
        #expect(try ConfigParser.parse("[[bridges]]\n", file: "t.toml").stateDirectory == "/run/tapbridge")
        #expect(try ConfigParser.parse("metrics = \"198.18.0.1:9\"\nmetrics-allow-remote = true\n[[bridges]]\n", file: "t.toml")
            .metricsAllowRemote)
        do {
            _ = try ConfigParser.parse("""
                log-format = "xml"
                metrics = "0.0.0.0:9417"
                state-dir = "run/tb"
                [[bridges]]
                """, file: "t.toml", checks: .daemon)
            Issue.record("accepted a bad config")
        } catch let e as ConfigError {
            let text = e.description
            #expect(text.contains("t.toml: log-format: unknown format 'xml' (one of: text, json)"), "\(text)")
            #expect(text.contains("t.toml: metrics: '0.0.0.0:9417' is not a loopback address"), "\(text)")
            #expect(text.contains("t.toml: state-dir: must be an absolute path"), "\(text)")
        }
    }

    @Test func sdNotifyMessages() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let listener = try NotifyListener(abstractName: "\(t.tag)-notify-\(UInt32.random(in: 0...UInt32.max))")
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(),
                                      environment: ["NOTIFY_SOCKET": "@" + listener.name, "WATCHDOG_USEC": "400000"])
            let ready = try listener.expect("READY=1")
            #expect(ready.contains("STATUS=2 port(s) on 1 bridge(s)"), "\(ready)")
            // Every port is up when READY=1 arrives.
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")
            _ = try listener.expect("WATCHDOG=1")
            kill(d.process.processIdentifier, SIGHUP)
            let reloading = try listener.expect("RELOADING=1")
            #expect(reloading.contains("MONOTONIC_USEC="))
            _ = try listener.expect("READY=1")
            #expect(d.stop() == 0)
            let stopping = try listener.expect("STOPPING=1")
            #expect(stopping.contains("STATUS=stopping: SIGTERM"), "\(stopping)")
        }
    }

    @Test func sigkillUnderTrafficThenRestartReclaims() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-state"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state) }
            // A link the daemon must never touch (this kernel has no dummy driver: a veth).
            let dummy = t.ifname("oth")
            try t.addVeth(dummy, t.ifname("oth2"))
            let dummyIndex = try ifindex(dummy)

            let d1 = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--state-dir", state])
            let before = try h.macvtaps.map { try ifindex($0) }
            // Traffic through the bridge when the daemon dies.
            let flood = try BackgroundCommand(["ip", "netns", "exec", h.namespaces[0], "ping", "-c", "400", "-i", "0.005", "-q", h.addresses[1]], cleanup: t)
            defer { flood.stop() }
            usleep(500_000)
            #expect(d1.stop(signal: SIGKILL) == SIGKILL)
            // Nothing cleaned up: the links and the ledger are still there.
            #expect(try h.macvtaps.map { try ifindex($0) } == before)
            let ledger = try #require(try LinkLedger(directory: state).read())
            #expect(Set(ledger.links.map(\.name)) == Set(h.macvtaps))

            // A link named like one of ours but not the one we made: never deleted.
            try run(["ip", "link", "del", h.macvtaps[2]])
            try run(["ip", "link", "add", "link", h.veths[2], "name", h.macvtaps[2], "type", "macvtap", "mode", "passthru"])
            let foreignIndex = try ifindex(h.macvtaps[2])

            // Restart wanting ports 0 and 1 only (port 1 changed? no: same parent and mode -> reclaimed).
            let config2 = "[[bridges]]\n" + Hosts.portTables(h, only: [0, 1])
            let d2 = try DaemonProcess(t, config: config2, arguments: ["--state-dir", state])
            try d2.waitFor("info running")
            #expect(d2.log.contains("link reclaimed ifindex=\(before[0]) link=\(h.macvtaps[0])"), "\(d2.log)")
            #expect(d2.log.contains("link reclaimed ifindex=\(before[1]) link=\(h.macvtaps[1])"), "\(d2.log)")
            #expect(d2.log.contains("left-over link not ours any more, left alone"), "\(d2.log)")
            #expect(try ifindex(h.macvtaps[0]) == before[0] && ifindex(h.macvtaps[1]) == before[1])
            #expect(h.ping(0, h.addresses[1]), "\(d2.log)")
            #expect(try ifindex(h.macvtaps[2]) == foreignIndex)
            #expect(try ifindex(dummy) == dummyIndex)
            // The new ledger holds exactly what this daemon owns now.
            let now = try #require(try LinkLedger(directory: state).read())
            #expect(Set(now.links.map(\.name)) == Set(h.macvtaps[0...1]))
            #expect(d2.stop() == 0)
            #expect(linkDetails(h.macvtaps[0]) == nil && linkDetails(h.macvtaps[1]) == nil, "reclaimed links leaked")
            #expect(try ifindex(h.macvtaps[2]) == foreignIndex && ifindex(dummy) == dummyIndex)
            #expect(!FileManager.default.fileExists(atPath: state + "/links.json"), "a clean stop leaves no ledger")
        }
    }

    /// A port added by SIGHUP is in the ledger too, so a crash after a reload loses nothing.
    @Test func portsAddedByReloadAreRecovered() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-state"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state) }
            let d1 = try DaemonProcess(t, config: "[[bridges]]\n" + Hosts.portTables(h, only: [0, 1]), arguments: ["--state-dir", state])
            try ("[[bridges]]\n" + h.portTables()).write(toFile: d1.configPath, atomically: true, encoding: .utf8)
            kill(d1.process.processIdentifier, SIGHUP)
            try d1.waitFor("port added by reload")
            let added = try ifindex(h.macvtaps[2])
            #expect(try #require(try LinkLedger(directory: state).read()).links.map(\.name).sorted() == h.macvtaps.sorted())
            #expect(d1.stop(signal: SIGKILL) == SIGKILL)
            let d2 = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--state-dir", state])
            #expect(d2.log.contains("link reclaimed ifindex=\(added) link=\(h.macvtaps[2])"), "\(d2.log)")
            #expect(h.ping(2, h.addresses[0]), "\(d2.log)")
            // Checking the file next to the running daemon (before a reload): its links are its own, not conflicts.
            let check = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--check", "--state-dir", state],
                                          waitReady: false)
            #expect(check.waitExit() == 0, "\(check.log)")
            #expect(check.log.contains("warn  state directory \(state): in use by a running tapbridge daemon"), "\(check.log)")
            #expect(d2.stop() == 0)
            for m in h.macvtaps { #expect(linkDetails(m) == nil) }
        }
    }

    @Test func restartDeletesLeftoversNoLongerWanted() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-state"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state) }
            let d1 = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--state-dir", state])
            #expect(d1.stop(signal: SIGKILL) == SIGKILL)
            // Same name, now another mode: not reclaimable, so deleted and made again.
            let config2 = "[[bridges]]\n" + h.portTables().replacingOccurrences(of: "mode = \"passthru\"", with: "mode = \"private\"")
            let old = try ifindex(h.macvtaps[0])
            let d2 = try DaemonProcess(t, config: config2, arguments: ["--state-dir", state])
            #expect(d2.log.contains("left-over link deleted (not wanted by the configuration) ifindex=\(old)"), "\(d2.log)")
            #expect(try ifindex(h.macvtaps[0]) != old)
            #expect((linkDetails(h.macvtaps[0])?["linkinfo"] as? [String: Any]).flatMap { ($0["info_data"] as? [String: Any])?["mode"] as? String } == "private")
            // A second daemon on the same state directory is refused while the first runs.
            let d3 = try DaemonProcess(t, config: "[[bridges]]\n", arguments: ["--state-dir", state], waitReady: false)
            #expect(d3.waitExit() == 1)
            #expect(d3.log.contains("is in use by another tapbridge daemon"), "\(d3.log)")
            #expect(d2.stop() == 0)
            #expect(linkDetails(h.macvtaps[0]) == nil && linkDetails(h.macvtaps[1]) == nil)
        }
    }

    @Test func unreadableLedgerStopsTheStartAndStays() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-state"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state) }
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            try "{ truncated".write(toFile: state + "/links.json", atomically: false, encoding: .utf8)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--state-dir", state], waitReady: false)
            #expect(d.waitExit() == 1)
            #expect(d.log.contains("crash-recovery ledger '\(state)/links.json' is not a ledger tapbridge wrote"), "\(d.log)")
            #expect(try String(contentsOfFile: state + "/links.json", encoding: .utf8) == "{ truncated")
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }

    /// Issue 12 #7: a garbage ledger next to the links it would have explained is reported as
    /// the ledger's problem (not 'already exists'), a symlinked ledger is never followed, and
    /// `run --check` says so too. Nothing is created, and the files are left as they were.
    @Test func garbageOrSymlinkedLedgerIsNamed() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-state"
            let elsewhere = FileManager.default.temporaryDirectory.path + "/\(t.tag)-elsewhere.json"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state); unlink(elsewhere) }
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            // The left-over link a SIGKILLed daemon made, and its ledger overwritten with garbage.
            try run(["ip", "link", "add", "link", h.veths[0], "name", h.macvtaps[0], "type", "macvtap", "mode", "passthru"])
            t.track(link: h.macvtaps[0])
            let ledger = state + "/links.json"
            try Data([0x00, 0xff, 0x7b, 0x0a]).write(to: URL(fileURLWithPath: ledger))
            let config = "[[bridges]]\n" + h.portTables()
            let d = try DaemonProcess(t, config: config, arguments: ["--state-dir", state], waitReady: false)
            #expect(d.waitExit() == 1)
            #expect(d.log.contains("crash-recovery ledger '\(ledger)' is not a ledger tapbridge wrote"), "\(d.log)")
            #expect(!d.log.contains("already exists"), "\(d.log)")
            let check = try DaemonProcess(t, config: config, arguments: ["--state-dir", state, "--check"], waitReady: false)
            #expect(check.waitExit() == 1)
            #expect(check.log.contains("FAIL  crash-recovery ledger: crash-recovery ledger '\(ledger)' is not a ledger"), "\(check.log)")

            // A symbolic link to a well-formed ledger elsewhere: never followed.
            let other = LinkLedger(directory: (elsewhere as NSString).deletingLastPathComponent)
            try JSONEncoder().encode(LedgerFile(pid: 1, bootID: other.bootID, run: "x", links: [])).write(to: URL(fileURLWithPath: elsewhere))
            unlink(ledger)
            #expect(symlink(elsewhere, ledger) == 0)
            let s = try DaemonProcess(t, config: config, arguments: ["--state-dir", state], waitReady: false)
            #expect(s.waitExit() == 1)
            #expect(s.log.contains("crash-recovery ledger '\(ledger)' is a symbolic link; tapbridge never follows one there"), "\(s.log)")
            let check2 = try DaemonProcess(t, config: config, arguments: ["--state-dir", state, "--check"], waitReady: false)
            #expect(check2.waitExit() == 1)
            #expect(check2.log.contains("FAIL  crash-recovery ledger: crash-recovery ledger '\(ledger)' is a symbolic link"), "\(check2.log)")
            var st = stat()
            #expect(lstat(ledger, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK, "the link was replaced")
            #expect(throws: DaemonError.self) { try LinkLedger(directory: state).read() }
        }
    }

    /// A macvtap moved into a namespace is found there again (its ifindex read where it lives).
    @Test func recoveryInANamespace() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let ns = h.namespaces[0]
            let state = FileManager.default.temporaryDirectory.path + "/\(t.tag)-state"
            t.onCleanup { try? FileManager.default.removeItem(atPath: state) }
            let config = """
                [[bridges]]
                [[bridges.ports]]
                name = "\(h.macvtaps[0])"
                parent = "\(h.veths[0])"
                mode = "passthru"
                netns = "\(ns)"
                """
            let d1 = try DaemonProcess(t, config: config, arguments: ["--state-dir", state])
            let index = try ifindex(h.macvtaps[0], netns: ns)
            #expect(d1.stop(signal: SIGKILL) == SIGKILL)
            let ledger = try #require(try LinkLedger(directory: state).read())
            #expect(ledger.links.first?.netns == ns && ledger.links.first?.ifindex == Int32(index))
            let d2 = try DaemonProcess(t, config: config, arguments: ["--state-dir", state])
            #expect(d2.log.contains("link reclaimed ifindex=\(index) link=\(h.macvtaps[0]) netns=\(ns)"), "\(d2.log)")
            #expect(d2.stop() == 0)
            #expect(linkDetails(h.macvtaps[0], netns: ns) == nil, "\(d2.log)")
        }
    }

    @Test func notifierPathSocketAndWatchdogPID() throws {
        let path = FileManager.default.temporaryDirectory.path + "/tbt-notify-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        try #require(bound == 0)
        let n = try #require(try SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000",
                                                               "WATCHDOG_PID": "\(getpid())"]))
        #expect(n.watchdogInterval == 1.5)
        n.ready(status: "two\nlines")
        var buf = [UInt8](repeating: 0, count: 512)
        let got = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
        #expect(got > 0 && String(decoding: buf[0..<max(0, got)], as: UTF8.self) == "READY=1\nSTATUS=two lines")
        // The watchdog is someone else's: no pings from us.
        #expect(try SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"])?
            .watchdogInterval == nil)
        #expect(try SystemdNotifier(environment: [:]) == nil)
        #expect(throws: DaemonError.self) { try SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative"]) }
    }

    @Test func checkReportsGoodAndBad() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let good = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--check"], waitReady: false)
            #expect(good.waitExit() == 0, "\(good.log)")
            for line in ["ok    io_uring: setup", "ok    io_uring buffer rings", "ok    capability CAP_NET_ADMIN",
                         "ok    kernel macvtap", "ok    device node", "ok    config against host"] {
                #expect(good.log.contains(line), "missing '\(line)' in:\n\(good.log)")
            }
            #expect(!good.log.contains("FAIL"), "\(good.log)")
            #expect(linkDetails(h.macvtaps[0]) == nil, "--check created a link")
            #expect(!FileManager.default.fileExists(atPath: good.stateDir), "--check created the state directory")

            // Bad configuration: a parent that does not exist, a namespace that does not exist.
            let bad = try DaemonProcess(t, config: """
                [[bridges]]
                [[bridges.ports]]
                name = "\(t.ifname("x0"))"
                parent = "\(t.ifname("nope"))"
                [[bridges.ports]]
                name = "\(t.ifname("x1"))"
                netns = "\(t.tag)-nonexistent"
                """, arguments: ["--check"], waitReady: false)
            #expect(bad.waitExit() == 1)
            #expect(bad.log.contains("FAIL  config against host: \(bad.configPath): bridges[0].ports[0].parent: interface '\(t.ifname("nope"))' does not exist"), "\(bad.log)")
            #expect(bad.log.contains("bridges[0].ports[1].netns: network namespace"), "\(bad.log)")
            #expect(bad.log.contains("check(s) failed (nothing was changed)"))

            // Bad host: the capabilities the daemon needs taken away (bounding set, as systemd would).
            let nocaps = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--check"], waitReady: false,
                                           wrapper: ["setpriv", "--bounding-set=-net_admin,-mknod", "--inh-caps=-net_admin,-mknod"])
            #expect(nocaps.waitExit() == 1, "\(nocaps.log)")
            #expect(nocaps.log.contains("FAIL  capability CAP_NET_ADMIN: missing"), "\(nocaps.log)")
            #expect(nocaps.log.contains("FAIL  capability CAP_MKNOD: missing"), "\(nocaps.log)")
            #expect(nocaps.log.contains("FAIL  device node: mknod"), "\(nocaps.log)")
        }
    }

    /// The unit's CapabilityBoundingSet is enough: the daemon creates, forwards and deletes with
    /// only CAP_NET_ADMIN, CAP_MKNOD and CAP_SYS_ADMIN.
    @Test func runsWithTheUnitsCapabilities() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let unit = try String(contentsOfFile: packageRoot() + "/tools/tapbridge.service", encoding: .utf8)
            let line = try #require(unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") })
            let caps = line.dropFirst("CapabilityBoundingSet=".count).split(separator: " ")
                .map { $0.lowercased().replacingOccurrences(of: "cap_", with: "") }
            #expect(Set(caps) == ["net_admin", "mknod", "sys_admin"], "\(caps)")
            let bounding = "--bounding-set=-all," + caps.map { "+" + $0 }.joined(separator: ",")
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), wrapper: ["setpriv", bounding])
            #expect(h.ping(0, h.addresses[1]), "\(d.log)")
            #expect(d.stop() == 0)
            #expect(linkDetails(h.macvtaps[0]) == nil && linkDetails(h.macvtaps[1]) == nil, "\(d.log)")
        }
    }

    @Test func ledgerWritesAreAtomicAndReadBack() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/tbt-ledger-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let l = LinkLedger(directory: dir)
        try l.prepare()
        let link = LedgerLink(name: "tbtx0", netns: "ns", ifindex: 7, mac: "02:00:00:00:00:01", kind: "macvtap",
                              parent: "eth0", parentIndex: 2, mode: "bridge", createdBy: l.run, createdAt: "now")
        try l.write([link])
        let back = try #require(try l.read())
        #expect(back.links == [link] && back.pid == getpid() && back.run == l.run && !back.bootID.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["links.json"], "temp file left behind")
        try "{ not json".write(toFile: l.path, atomically: false, encoding: .utf8)
        #expect(throws: DaemonError.self) { try l.read() }
    }

    /// Worker busy time comes from the thread's CPU time in /proc, found by its name.
    @Test func workerBusyTimeFromProc() throws {
        let done = DispatchSemaphore(value: 0), measured = DispatchSemaphore(value: 0)
        let t = Thread {
            try? "tb-worker-63".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            // Burn 0.1 s of this thread's own CPU time (not wall time: the machine is shared),
            // bounded by 20 s of wall time.
            var x: UInt64 = 1
            let giveUp = Date().addingTimeInterval(20)
            func threadCPU() -> Double {
                var ts = timespec()
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
                return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
            }
            let start = threadCPU()
            while threadCPU() - start < 0.1 && Date() < giveUp {
                for i in 0..<10_000 { x = x &* 6364136223846793005 &+ UInt64(i) }
            }
            if x == 42 { print(x) }
            done.signal()
            measured.wait()
        }
        t.start()
        done.wait()
        let cpu = MetricsExporter.workerCPUSeconds()[63]
        measured.signal()
        #expect((cpu ?? 0) >= 0.05, "busy seconds \(String(describing: cpu))")
    }

    /// Issue 12 #9: nothing printed into a text log line can split it or reorder it.
    @Test func textLogLinesEscapeControlCharacters() throws {
        let line = LineLogHandler.line(level: .warning, message: "port lost\n2026-01-01T00:00:00.000Z info forged",
                                       metadata: ["path": "/run/x\n.sock", "name": "vm\u{202E}gpj", "esc": "\u{1b}[31m", "k\u{7f}": "back\\slash"])
        #expect(line.filter { $0 == "\n" }.count == 1 && line.hasSuffix("\n"), "\(line)")
        #expect(line.contains(#"warning port lost\n2026-01-01T00:00:00.000Z info forged"#), "\(line)")
        #expect(line.contains(#"path=/run/x\n.sock"#) && line.contains(#"name=vm\u{202E}gpj"#) && line.contains(#"esc=\x1b[31m"#), "\(line)")
        #expect(line.contains(#"k\x7f=back\\slash"#), "\(line)")
        #expect(!line.unicodeScalars.dropLast().contains { TextSafety.isControl($0) }, "\(line)")
        let j = JSONLogHandler.line(level: .info, message: "x\u{202E}y\u{85}", label: "tapbridge", metadata: [:])
        #expect(j.contains(#""message":"x\u202ey\u0085""#), "\(j)")
    }

    @Test func jsonLogLinesEscape() throws {
        let line = JSONLogHandler.line(level: .info, message: "a \"quoted\"\nline", label: "tapbridge",
                                       metadata: ["port": "m\\0", "message": "shadow", "ctl": "\u{1}"])
        let o = try #require(try json(line) as? [String: String])
        #expect(o["message"] == "a \"quoted\"\nline" && o["port"] == "m\\0" && o["meta.message"] == "shadow" && o["ctl"] == "\u{1}")
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
    }
}

// MARK: helpers

/// The metrics port the daemon logged ("metrics listening address=127.0.0.1:PORT").
func metricsPort(_ log: String) -> UInt16? {
    guard let r = log.range(of: #"127\.0\.0\.1:([0-9]+)"#, options: .regularExpression) else { return nil }
    return UInt16(log[r].split(separator: ":").last ?? "")
}

func ifindex(_ name: String, netns: String? = nil) throws -> Int {
    let d = try #require(linkDetails(name, netns: netns), "no link \(name)")
    return try #require(d["ifindex"] as? Int)
}

func packageRoot() -> String {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}

/// One sample of the text exposition format.
struct Sample: Equatable, CustomStringConvertible {
    var name: String
    var labels: [String: String]
    var value: Double
    var description: String {
        "\(name){\(labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))} \(value)"
    }
}

extension [Sample] {
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        first { $0.name == name && $0.labels == labels }?.value
    }
}

/// Parses `name{k="v",...} value` lines (comments skipped, label escapes undone).
func parseMetrics(_ text: String) throws -> [Sample] {
    var out: [Sample] = []
    for raw in text.split(separator: "\n") where !raw.hasPrefix("#") {
        var s = Substring(raw)
        let nameEnd = s.firstIndex { $0 == "{" || $0 == " " } ?? s.endIndex
        let name = String(s[..<nameEnd])
        s = s[nameEnd...]
        var labels: [String: String] = [:]
        if s.first == "{" {
            s = s.dropFirst()
            while s.first != "}" {
                guard let eq = s.firstIndex(of: "=") else { throw HarnessError("bad labels: \(raw)") }
                let key = String(s[..<eq])
                s = s[s.index(eq, offsetBy: 2)...]   // past ="
                var value = ""
                while let c = s.first, c != "\"" {
                    s = s.dropFirst()
                    if c == "\\", let e = s.first {
                        s = s.dropFirst()
                        value.append(e == "n" ? "\n" : e)
                    } else { value.append(c) }
                }
                s = s.dropFirst()   // closing quote
                if s.first == "," { s = s.dropFirst() }
                labels[key] = value
            }
            s = s.dropFirst()
        }
        guard let v = Double(s.trimmingCharacters(in: .whitespaces)) else { throw HarnessError("bad value: \(raw)") }
        out.append(Sample(name: name, labels: labels, value: v))
    }
    return out
}

/// Sends raw bytes to 127.0.0.1:port and returns the whole response (the server closes).
func httpRaw(port: UInt16, _ request: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
    defer { close(fd) }
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    sa.sin_addr.s_addr = inet_addr("127.0.0.1")
    guard withUnsafePointer(to: &sa, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else {
        throw HarnessError("connect 127.0.0.1:\(port): errno \(errno)")
    }
    let bytes = Array(request.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }   // the server may answer (431) and close before reading it all
        off += n
    }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func httpGet(port: UInt16, path: String, method: String = "GET") throws -> (status: Int, body: String) {
    let r = try httpRaw(port: port, "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
    guard let headEnd = r.range(of: "\r\n\r\n"), let status = Int(r.split(separator: " ").dropFirst().first ?? "") else {
        throw HarnessError("bad HTTP response: \(r.prefix(200))")
    }
    return (status, String(r[headEnd.upperBound...]))
}

/// A datagram socket standing in for systemd's notify socket (abstract name).
final class NotifyListener {
    let fd: Int32
    let name: String
    private var received: [String] = []

    init(abstractName: String) throws {
        name = abstractName
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let path = [UInt8(0)] + Array(abstractName.utf8)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: path) }
        let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + path.count)
        guard withUnsafePointer(to: &sa, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }) == 0 else {
            close(fd)
            throw HarnessError("bind @\(abstractName): errno \(errno)")
        }
    }

    deinit { close(fd) }

    /// Waits (bounded) for a message containing the line `field`; returns it whole.
    func expect(_ field: String, timeout: Double = 20) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let i = received.firstIndex(where: { $0.split(separator: "\n").contains { $0 == field } }) {
                return received.remove(at: i)
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { received.append(String(decoding: buf[0..<n], as: UTF8.self)) }
        }
        throw HarnessError("no sd_notify message with \(field); got \(received)")
    }
}
