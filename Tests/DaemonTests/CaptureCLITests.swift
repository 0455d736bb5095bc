// `tapbridge capture` against a running daemon: -c stops by itself, a bridge capture names
// every port, a pipe into `tcpdump -r -` sees exactly what was captured, SIGTERM stops it
// cleanly with the counts on stderr. Files are checked with tshark -r / tcpdump -r.
import Foundation
import Testing
import TestSupport

/// Starts `tapbridge capture ARGS --control <socket>` with stdout into `stdout`.
func startCapture(_ t: Topology, _ d: DaemonProcess, _ args: [String], stdout: Any? = nil) throws -> (Process, Pipe) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tapbridgeExecutable())
    p.arguments = ["capture"] + args + ["--control", d.controlPath]
    let err = Pipe()
    p.standardError = err
    p.standardOutput = stdout ?? FileHandle.nullDevice
    p.standardInput = FileHandle.nullDevice
    try p.run()
    t.onCleanup { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
    return (p, err)
}

/// Starts `tcpdump ARGS` reading the returned pipe; its stdout goes to the returned `out`.
func startTcpdump(_ t: Topology, _ args: [String]) throws -> (Process, Pipe, Pipe) {
    let pipe = Pipe(), out = Pipe()
    let dump = Process()
    dump.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    dump.arguments = ["tcpdump"] + args
    dump.standardInput = pipe
    dump.standardOutput = out
    dump.standardError = FileHandle.nullDevice
    try dump.run()
    t.onCleanup { if dump.isRunning { kill(dump.processIdentifier, SIGKILL); dump.waitUntilExit() } }
    return (dump, pipe, out)
}

/// Waits up to `timeout` for `p` to exit; SIGKILLs it past that. True if it exited by itself.
func waitExit(_ p: Process, timeout: Double = 20) -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < end { usleep(50_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return false }
    p.waitUntilExit()
    return true
}

@Suite(.serialized) struct CaptureCLI {
    @Test func bridgeCaptureWithCountStopsByItself() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1], count: 1))
            let file = FileManager.default.temporaryDirectory.path + "/\(t.tag)-br.pcapng"
            t.onCleanup { try? FileManager.default.removeItem(atPath: file) }
            let (p, err) = try startCapture(t, d, ["br0", "-c", "8", "-w", file, "icmp"])
            try d.waitFor("capture of")
            // 4 echo requests and replies, each seen entering one port and leaving the other: 16 >= 8.
            #expect(h.ping(0, h.addresses[1], count: 4))
            #expect(waitExit(p), "capture -c 8 ends by itself")
            #expect(p.terminationStatus == 0)
            let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(msg.contains("8 frames captured, 0 dropped"), "\(msg)")
            let rows = try run(["tshark", "-n", "-r", file, "-T", "fields", "-e", "frame.interface_name", "-e", "icmp.type"]).stdout
                .split(separator: "\n")
            #expect(rows.count == 8)
            #expect(Set(rows.map { $0.split(separator: "\t").first.map(String.init) ?? "" }) == Set(h.macvtaps), "\(rows)")
            #expect(try run(["tcpdump", "-n", "-r", file]).stdout.split(separator: "\n").count == 8)
            try d.waitFor("capture ended")
            #expect(d.stop() == 0)
        }
    }

    @Test func pipeIntoTcpdumpAndStopBySignal() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1], count: 1))
            let (dump, pipe, out) = try startTcpdump(t, ["-n", "-r", "-"])
            let (p, err) = try startCapture(t, d, [h.macvtaps[1], "-i", "egress", "-w", "-", "icmp[icmptype] == icmp-echo"],
                                            stdout: pipe)
            try pipe.fileHandleForWriting.close()   // only the capture process writes it now
            try d.waitFor("capture of")
            #expect(h.ping(0, h.addresses[1], count: 5))
            usleep(300_000)
            kill(p.processIdentifier, SIGTERM)
            #expect(waitExit(p), "SIGTERM stops the capture")
            #expect(p.terminationStatus == 0)
            let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(msg.contains("5 frames captured, 0 dropped"), "\(msg)")
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(waitExit(dump))
            let requests = text.split(separator: "\n").filter { $0.contains("ICMP echo request") }
            #expect(requests.count == 5, "\(text)")
            try d.waitFor("capture ended")
            #expect(d.stop() == 0)
        }
    }

    @Test func readerGoingAwayEndsTheCapture() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 2)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            #expect(h.ping(0, h.addresses[1], count: 1))
            let (_, pipe, _) = try startTcpdump(t, ["-n", "-c", "2", "-r", "-"])   // reads two frames, then exits
            let (p, err) = try startCapture(t, d, [h.macvtaps[0], "-w", "-", "icmp"], stdout: pipe)
            try pipe.fileHandleForWriting.close()
            try pipe.fileHandleForReading.close()   // only tcpdump reads it
            try d.waitFor("capture of")
            // Pings until the capture notices its reader is gone (bounded: at most 10 rounds).
            for _ in 0..<10 where p.isRunning { _ = h.ping(0, h.addresses[1], count: 2) }
            #expect(waitExit(p), "the capture ends when its reader has gone")
            let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(msg.contains("frames captured"), "\(msg)")
            try d.waitFor("capture ended")
            #expect(d.stop() == 0)
        }
    }

    @Test func refusals() throws {
        try withTopology { t in
            let h = try Hosts(t, count: 1)
            let d = try DaemonProcess(t, config: "[[bridges]]\nname = \"br0\"\n" + h.portTables())
            let missing = try run([tapbridgeExecutable(), "capture", "nosuch", "--control", d.controlPath], check: false)
            #expect(missing.status == 1 && missing.stderr.contains("no port or bridge named 'nosuch'"), "\(missing)")
            let bad = try run([tapbridgeExecutable(), "capture", h.macvtaps[0], "--control", d.controlPath, "udp", "port", "banana"], check: false)
            #expect(bad.status == 1 && bad.stderr.contains("capture filter"), "\(bad)")
            let usage = try run([tapbridgeExecutable(), "capture", h.macvtaps[0], "-W", "3", "-w", "x"], check: false)
            #expect(usage.status == 2 && usage.stderr.contains("-W needs -C"), "\(usage)")
            #expect(d.stop() == 0)
        }
    }
}
