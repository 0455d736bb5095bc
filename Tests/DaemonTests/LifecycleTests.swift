// LifecycleTests: the daemon creates exactly the links it declares, deletes exactly those on
// SIGTERM/SIGINT, refuses a bad config before creating anything, and survives a port's link
// being deleted under it. Real kernel, own namespaces, the built binary.
import Foundation
import Testing
import TestSupport

@Suite struct DaemonLifecycle {
    @Test func badConfigCreatesNothing() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let missing = t.ifname("nope")
            let before = try linkNames()
            let config = """
                [[bridges]]
                \(h.portTables())
                [[bridges.ports]]
                name = "\(t.ifname("m9"))"
                parent = "\(missing)"
                """
            let d = try DaemonProcess(t, config: config, waitReady: false)
            let status = d.waitExit()
            #expect(status == 1)
            #expect(d.log.contains("bridges[0].ports[1].parent: interface '\(missing)' does not exist"))
            #expect(d.log.contains("nothing was created"))
            let after = try linkNames()
            // Other tests run in parallel: compare only what this config could have made.
            let mine = { (s: Set<String>) in s.filter { $0.hasPrefix(t.tag) } }
            #expect(mine(before) == mine(after))
            #expect(!after.contains(h.macvtaps[0]))
        }
    }

    /// Issue 12 #8 and #14: a control socket path `run` cannot bind (a symbolic link to a
    /// regular file) and a VM socket in a read-only directory are refused by `config check`,
    /// `run --check` and `run` alike, before anything is created.
    @Test func unusableSocketPathsAreRefusedEverywhereFirst() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let base = FileManager.default.temporaryDirectory.path + "/\(t.tag)-sockets"
            let target = base + "/regular-file", control = base + "/control.sock"
            t.onCleanup { try? FileManager.default.removeItem(atPath: base) }
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: target, contents: Data("keep me".utf8))
            #expect(symlink(target, control) == 0)
            let config = "[control]\nsocket = \"\(control)\"\n[[bridges]]\n" + h.portTables()
            let reason = "control.socket: '\(control)' is a symbolic link (tapbridge never follows or replaces one: remove it)"

            let path = base + "/t.toml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            let check = try run([tapbridgeExecutable(), "config", "check", path], check: false)
            #expect(check.status == 1 && check.stdout.contains("\(path): \(reason)"), "\(check)")
            let hostCheck = try DaemonProcess(t, config: config, arguments: ["--control", control, "--check"], waitReady: false)
            #expect(hostCheck.waitExit() == 1)
            #expect(hostCheck.log.contains(reason), "\(hostCheck.log)")
            let d = try DaemonProcess(t, config: config, arguments: ["--control", control], waitReady: false)
            #expect(d.waitExit() == 1)
            #expect(d.log.contains(reason) && d.log.contains("nothing was created"), "\(d.log)")
            #expect(linkDetails(h.macvtaps[0]) == nil)
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep me")

            // A VM socket whose directory is read-only (as /run is under ProtectSystem=strict).
            let ro = base + "/ro"
            try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
            try run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tbt-ro", ro])
            t.onCleanup { _ = try? run(["umount", ro], check: false) }
            let vm = "[[bridges.ports]]\nname = \"\(t.tag)vm\"\nkind = \"vm\"\npath = \"\(ro)/vm.sock\"\nmac = \"52:54:00:00:00:42\"\n"
            let vmConfig = "[[bridges]]\nname = \"br0\"\n" + h.portTables() + vm
            try vmConfig.write(toFile: path, atomically: true, encoding: .utf8)
            let vmCheck = try run([tapbridgeExecutable(), "config", "check", path], check: false)
            #expect(vmCheck.status == 1 && vmCheck.stdout.contains("directory '\(ro)' is not writable (Read-only file system)"), "\(vmCheck)")
            let vmHostCheck = try DaemonProcess(t, config: vmConfig, arguments: ["--check"], waitReady: false)
            #expect(vmHostCheck.waitExit() == 1)
            #expect(vmHostCheck.log.contains("is not writable (Read-only file system)"), "\(vmHostCheck.log)")
            let vmRun = try DaemonProcess(t, config: vmConfig, waitReady: false)
            #expect(vmRun.waitExit() == 1)
            #expect(vmRun.log.contains("is not writable (Read-only file system)") && vmRun.log.contains("nothing was created"), "\(vmRun.log)")
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }

    /// Issue 12 #13: `config check`, `run --check` and `run` report a typo and a missing parent
    /// together (the parent used to be reported only once the typo was fixed).
    @Test func typoAndMissingParentInOnePass() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let missing = t.ifname("nope")
            let config = "[[bridges]]\n" + h.portTables().replacingOccurrences(of: "mode =", with: "mdoe =")
                + "[[bridges.ports]]\nname = \"\(t.ifname("m9"))\"\nparent = \"\(missing)\"\n"
            let typo = "bridges[0].ports[0].mdoe: unknown key (did you mean 'mode'?)"
            let parent = "bridges[0].ports[1].parent: interface '\(missing)' does not exist"
            let path = FileManager.default.temporaryDirectory.path + "/\(t.tag)-one-pass.toml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            t.onCleanup { unlink(path) }
            let check = try run([tapbridgeExecutable(), "config", "check", path], check: false)
            #expect(check.status == 1 && check.stdout.contains(typo) && check.stdout.contains(parent), "\(check)")
            let hostCheck = try DaemonProcess(t, config: config, arguments: ["--check"], waitReady: false)
            #expect(hostCheck.waitExit() == 1)
            #expect(hostCheck.log.contains("FAIL  config: ") && hostCheck.log.contains(typo)
                    && hostCheck.log.contains("FAIL  config against host: ") && hostCheck.log.contains(parent), "\(hostCheck.log)")
            let d = try DaemonProcess(t, config: config, waitReady: false)
            #expect(d.waitExit() == 1)
            #expect(d.log.contains(typo) && d.log.contains(parent) && d.log.contains("nothing was created"), "\(d.log)")
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }

    /// Issue 12 #6: a link re-created by hand (after the daemon's own was deleted under it) no
    /// longer blocks every later start: one that is exactly what the port asks for is adopted,
    /// said in the log and left in place at stop; one that differs is refused naming the
    /// difference, by config check and run alike, before anything is created.
    @Test func handMadeLinkIsAdoptedOrRefusedNamingTheDifference() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let config = "[[bridges]]\n" + h.portTables()
            let d1 = try DaemonProcess(t, config: config)
            // The daemon's link deleted under it and made again by hand: re-attached.
            try run(["ip", "link", "del", h.macvtaps[0]])
            try d1.waitFor("port lost")
            try run(["ip", "link", "add", "link", h.veths[0], "name", h.macvtaps[0], "type", "macvtap", "mode", "passthru"])
            t.track(link: h.macvtaps[0])
            try run(["ip", "link", "set", h.macvtaps[0], "up"])
            try d1.waitFor("port re-attached")
            #expect(d1.stop() == 0)
            let handMade = try ifindex(h.macvtaps[0])

            // The next start (same file) adopts it and forwards; the stop leaves it.
            let d2 = try DaemonProcess(t, config: config)
            #expect(d2.log.contains("link adopted: an existing link is exactly what the port asks for"), "\(d2.log)")
            #expect(h.ping(0, h.addresses[1]), "\(d2.log)")
            #expect(d2.stop() == 0)
            #expect(try ifindex(h.macvtaps[0]) == handMade, "an adopted link was deleted")
            #expect(linkDetails(h.macvtaps[1]) == nil)

            // A hand-made link that differs (bridge mode, the port asks passthru): refused, named.
            try run(["ip", "link", "del", h.macvtaps[0]])
            try run(["ip", "link", "add", "link", h.veths[0], "name", h.macvtaps[0], "type", "macvtap", "mode", "bridge"])
            let reason = "bridges[0].ports[0].name: interface '\(h.macvtaps[0])' already exists and is not what the port asks for (mode bridge, the port asks for passthru)"
            let path = FileManager.default.temporaryDirectory.path + "/\(t.tag)-adopt.toml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            t.onCleanup { unlink(path) }
            let check = try run([tapbridgeExecutable(), "config", "check", path], check: false)
            #expect(check.status == 1 && check.stdout.contains(reason), "\(check)")
            let d3 = try DaemonProcess(t, config: config, waitReady: false)
            #expect(d3.waitExit() == 1)
            #expect(d3.log.contains(reason) && d3.log.contains("nothing was created"), "\(d3.log)")
            #expect(linkDetails(h.macvtaps[1]) == nil)
        }
    }

    /// Issue 12 #11: while a macvtap's parent is down the port shows down (not up) and frames
    /// for it are counted as port-down drops instead of written for the kernel to drop.
    @Test func portWithParentDownShowsDownAndCountsDrops() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1], count: 1), "\(d.log)")
            func port1() throws -> [String: Any] {
                try #require((try cliJSON(d, ["ports"])["ports"] as? [[String: Any]])?.first { $0["name"] as? String == h.macvtaps[1] })
            }
            func stats1() throws -> [String: Any] {
                try #require((try cliJSON(d, ["stats", h.macvtaps[1]])["ports"] as? [[String: Any]])?.first)
            }
            #expect(try port1()["state"] as? String == "up")
            // Host 1's side of its veth goes down: the macvtap's parent loses its carrier.
            try run(["ip", "-n", h.namespaces[1], "link", "set", "eth0", "down"])
            try d.waitFor("port link cannot carry frames")
            let p = try port1()
            #expect(p["state"] as? String == "down" && p["operstate"] as? String == "LOWERLAYERDOWN", "\(p)")
            let before = try stats1()
            #expect(!h.ping(0, h.addresses[1], count: 2))
            let after = try stats1()
            #expect(after["txFrames"] as? Int == before["txFrames"] as? Int, "\(before) -> \(after)")
            let drops = (after["drops"] as? [String: Int])?["port-down"] ?? 0
            #expect(drops > ((before["drops"] as? [String: Int])?["port-down"] ?? 0), "\(after)")
            // Back up: forwarding again.
            try run(["ip", "-n", h.namespaces[1], "link", "set", "eth0", "up"])
            try d.waitFor("port link up again")
            #expect(try port1()["state"] as? String == "up")
            #expect(h.ping(0, h.addresses[1], count: 2), "\(d.log)")
            #expect(d.stop() == 0)
        }
    }

    @Test func typoIsRefused() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let config = "[[bridges]]\n" + h.portTables().replacingOccurrences(of: "mode =", with: "mdoe =")
            let d = try DaemonProcess(t, config: config, waitReady: false)
            #expect(d.waitExit() == 1)
            #expect(d.log.contains("bridges[0].ports[0].mdoe: unknown key (did you mean 'mode'?)"))
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }

    @Test func logLevelOverrideQuietsTheLog() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "log-level = \"debug\"\n[[bridges]]\n" + h.portTables(),
                                      arguments: ["--log-level", "warning"], waitReady: false)
            let deadline = Date().addingTimeInterval(20)
            while linkDetails(h.macvtaps[1]) == nil && Date() < deadline { usleep(50_000) }
            usleep(500_000)
            #expect(h.ping(0, h.addresses[1]))
            #expect(d.stop() == 0)
            #expect(!d.log.contains(" info ") && !d.log.contains(" debug "), "\(d.log)")
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }

    @Test func checkChangesNothing() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables(), arguments: ["--check"], waitReady: false)
            #expect(d.waitExit() == 0)
            #expect(d.log.contains("ok    config \(d.configPath): 1 bridge(s), 2 port(s), 2 link(s) to create"))
            #expect(d.log.contains("\(d.configPath): ok (nothing was changed)"))
            #expect(linkDetails(h.macvtaps[0]) == nil && linkDetails(h.macvtaps[1]) == nil)
        }
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func signalDeletesExactlyTheCreatedLinks(signal: Int32) throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            // Host 2's macvtap exists before the daemon starts: it is used, never deleted.
            try run(["ip", "link", "add", "link", h.veths[2], "name", h.macvtaps[2], "type", "macvtap", "mode", "passthru"])
            t.track(link: h.macvtaps[2])
            try run(["ip", "link", "set", h.macvtaps[2], "up"])
            let config = "[[bridges]]\n" + Hosts.portTables(h, only: [0, 1]) + """
                [[bridges.ports]]
                name = "\(h.macvtaps[2])"

                """
            let d = try DaemonProcess(t, config: config)
            for i in 0..<2 {
                let l = try #require(linkDetails(h.macvtaps[i]), "macvtap \(i) not created")
                let info = l["linkinfo"] as? [String: Any]
                #expect(info?["info_kind"] as? String == "macvtap")
                #expect((info?["info_data"] as? [String: Any])?["mode"] as? String == "passthru")
                #expect(l["link"] as? String == h.veths[i])
            }
            #expect(d.stop(signal: signal) == 0)
            #expect(linkDetails(h.macvtaps[0]) == nil)
            #expect(linkDetails(h.macvtaps[1]) == nil)
            #expect(linkDetails(h.macvtaps[2]) != nil, "a link the daemon did not create was deleted")
            for v in h.veths { #expect(linkDetails(v) != nil) }
            #expect(d.log.contains("reason=\(signal == SIGTERM ? "SIGTERM" : "SIGINT")"))
        }
    }

    @Test func createdInNamespaceAndDeleted() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let ns = try t.addNamespace("guest")
            let config = "[[bridges]]\n" + h.portTables(extra: [0: "netns = \"\(ns)\""])
            let d = try DaemonProcess(t, config: config)
            #expect(linkDetails(h.macvtaps[0], netns: ns) != nil)
            #expect(linkDetails(h.macvtaps[0]) == nil)
            // The port was opened inside its namespace: frames cross between the two hosts.
            #expect(h.ping(0, h.addresses[1]), "no forwarding through a macvtap in another namespace:\n\(d.log)")
            #expect(d.stop() == 0)
            #expect(linkDetails(h.macvtaps[0], netns: ns) == nil)
        }
    }

    @Test func startFailureRemovesWhatWasCreated() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            // A bad MTU for the second link only shows up when the kernel refuses it.
            let config = "[[bridges]]\n" + h.portTables(extra: [1: "mtu = 65000"])
            let d = try DaemonProcess(t, config: config, waitReady: false)
            #expect(d.waitExit() == 1)
            #expect(d.log.contains("bridges[0].ports[1]"))
            #expect(linkDetails(h.macvtaps[0]) == nil, "the first link was left behind:\n\(d.log)")
            #expect(linkDetails(h.macvtaps[1]) == nil)
        }
    }

    @Test func portLinkDeletedWhileRunningIsRemovedAndCounted() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + h.portTables())
            try run(["ip", "link", "del", h.macvtaps[1]])
            try d.waitFor("port lost: link deleted")
            #expect(d.log.contains("port=\(h.macvtaps[1])"))
            #expect(d.log.contains("ports-lost=1"))
            #expect(d.stop() == 0)
            #expect(linkDetails(h.macvtaps[0]) == nil)
        }
    }
}

@Suite struct DaemonReload {
    @Test func sighupAddsAndRemovesPorts() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 3)
            let d = try DaemonProcess(t, config: "[[bridges]]\n" + Hosts.portTables(h, only: [0, 1]))
            #expect(linkDetails(h.macvtaps[2]) == nil)
            // A reload with a broken file changes nothing.
            try "[[bridges]]\nnmae = 1\n".write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("reload refused")
            #expect(linkDetails(h.macvtaps[0]) != nil)
            // Third host in, first host out.
            try ("[[bridges]]\n" + Hosts.portTables(h, only: [1, 2])).write(toFile: d.configPath, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            try d.waitFor("info reloaded")
            #expect(d.log.contains("port added by reload port=\(h.macvtaps[2])") || d.log.contains("port=\(h.macvtaps[2])"))
            #expect(linkDetails(h.macvtaps[2]) != nil)
            #expect(linkDetails(h.macvtaps[0]) == nil)
            #expect(d.stop() == 0)
            for m in h.macvtaps { #expect(linkDetails(m) == nil) }
        }
    }
}

extension Hosts {
    static func portTables(_ h: Hosts, only: [Int]) -> String {
        var sub = h
        sub.veths = only.map { h.veths[$0] }
        sub.macvtaps = only.map { h.macvtaps[$0] }
        return sub.portTables()
    }
}
