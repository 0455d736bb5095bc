// `tapbridge capture`: frames of a running daemon's port (or bridge) to a pcapng/pcap file,
// rotated like tcpdump -C/-W, or to stdout for `| tcpdump -r -` / `| wireshark -k -i -`. The
// daemon streams pcapng over the control socket; this side re-encodes into the chosen format
// and files, and on Ctrl-C/SIGTERM shuts its side of the socket so the daemon stops the
// capture and sends its final counts.
import ArgumentParser
import Capture
import Control
import Foundation
import SystemCalls

/// The control socket while a capture runs, for the signal handler (async-signal-safe use only).
nonisolated(unsafe) private var captureSocket: Int32 = -1

struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture", abstract: "Capture a running daemon's frames at a port or bridge, like tcpdump.",
        discussion: """
            PORT captures one port; BRIDGE captures every port attached to it (one pcapng interface per port, named after it). EXPRESSION is a pcap-filter expression (man pcap-filter), evaluated by the daemon before any copy.

            Stops on Ctrl-C or SIGTERM, after COUNT frames, or when the reader of stdout goes away; then prints on stderr how many frames were captured and how many were dropped because the daemon's capture queue was full (the datapath never waits for a capture).

            Examples:
              tapbridge capture mvt0 -w - | tcpdump -n -r -
              tapbridge capture mvt0 -w - | wireshark -k -i -
              tapbridge capture lan -i egress -c 100 -w lan.pcapng tcp port 22
              tapbridge capture mvt0 -w ring.pcap --format pcap -C 10 -W 5
            """)

    @Argument(help: "Port or bridge name.") var target: String
    @Argument(help: "pcap-filter expression (optional).") var expression: [String] = []
    @Option(name: .customShort("i"), help: ArgumentHelp("Direction: ingress, egress or both.", valueName: "DIR")) var direction = "both"
    @Option(name: .customShort("w"), help: ArgumentHelp("Output file; - for stdout.", valueName: "FILE")) var file = "-"
    @Option(name: .customShort("c"), help: ArgumentHelp("Stop after this many frames.", valueName: "COUNT")) var count: Int?
    @Option(name: .customShort("C"), help: ArgumentHelp("Start a new file when the current one exceeds this many million bytes (tcpdump -C).", valueName: "MB")) var fileSize: Int?
    @Option(name: .customShort("W"), help: ArgumentHelp("With -C: keep at most this many files, reusing them in turn (tcpdump -W).", valueName: "N")) var fileCount: Int?
    @Option(name: .customShort("s"), help: ArgumentHelp("Bytes kept per frame.", valueName: "SNAPLEN")) var snaplen: Int = CaptureWriter.maxSnaplen
    @Option(help: "File format: pcapng or pcap (nanosecond timestamps).") var format = "pcapng"
    @OptionGroup var control: ControlOptions

    func validate() throws {
        guard CaptureDirection(name: direction) != nil else { throw ValidationError("-i must be ingress, egress or both, not '\(direction)'") }
        guard CaptureFormat(rawValue: format) != nil else { throw ValidationError("--format must be pcapng or pcap, not '\(format)'") }
        if let c = count, c <= 0 { throw ValidationError("-c must be positive") }
        if let c = fileSize, c <= 0 || c > 1_000_000 { throw ValidationError("-C must be 1...1000000 (MB)") }
        if let w = fileCount, w <= 0 || w > 100_000 { throw ValidationError("-W must be 1...100000") }
        if fileCount != nil && fileSize == nil { throw ValidationError("-W needs -C") }
        if fileSize != nil && file == "-" { throw ValidationError("-C needs -w FILE") }
        guard (1...CaptureWriter.maxSnaplen).contains(snaplen) else { throw ValidationError("-s must be 1...\(CaptureWriter.maxSnaplen)") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        var args: [String: JSONValue] = ["target": .string(target), "direction": .string(direction), "snaplen": .number(Double(snaplen))]
        if !expression.isEmpty { args["filter"] = .string(expression.joined(separator: " ")) }
        if let c = count { args["count"] = .number(Double(c)) }
        let client = try control.connect()
        let first: JSONValue
        do { first = try client.call("capture", args) } catch { fail(error) }
        let names = first["interfaces"]?.array?.compactMap(\.string) ?? []
        guard !names.isEmpty else { fail(CaptureError("the daemon named no interface to capture")) }

        let destination: CaptureDestination = file == "-"
            ? .descriptor(STDOUT_FILENO)
            : .file(path: file, rotateBytes: fileSize.map { $0 * 1_000_000 }, maxFiles: fileCount)
        let writer: CaptureWriter
        do {
            writer = try CaptureWriter(format: CaptureFormat(rawValue: format) ?? .pcapng, interfaces: names,
                                       snaplen: snaplen, destination: destination)
            try writer.flush()   // the header at once: a reader on the pipe starts now
        } catch { fail(error) }

        let fd = client.fileDescriptor.rawValue
        var noTimeout = timeval()
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &noTimeout, socklen_t(MemoryLayout<timeval>.size))
        captureSocket = fd
        // Children of test runners inherit blocked signals: make sure these two arrive.
        var set = sigset_t()
        sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        let stop: @convention(c) (Int32) -> Void = { _ in if captureSocket >= 0 { shutdown(captureSocket, Int32(SHUT_WR)) } }
        signal(SIGINT, stop)
        signal(SIGTERM, stop)

        var reader = PcapngStreamReader()
        var captured: UInt64 = 0, dropped: UInt64 = 0, reported = false
        var outputError: Error?
        let limit = count.map(UInt64.init) ?? .max
        func consume(_ bytes: UnsafeRawBufferPointer) throws {
            try reader.feed(bytes, frame: { p in
                guard captured < limit, outputError == nil else { return }
                do {
                    try writer.write(interface: p.interface, direction: p.direction, timestamp: p.timestamp,
                                     originalLength: p.originalLength, data: p.data)
                    captured += 1
                } catch { outputError = error }
            }, statistics: { _, _, d in dropped += d; reported = true })
        }
        do {
            let pending = client.pending
            try pending.withUnsafeBytes { try consume($0) }
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            while outputError == nil {
                // (EINTR is retried inside; a timeout, an error or the end of the stream ends the capture)
                guard case .processed(let n)? = try? buf.withUnsafeMutableBytes({ p in try Syscall.receive(fd, p.baseAddress!, p.count) }),
                      n > 0 else { break }
                try buf.withUnsafeBytes { try consume(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                do { try writer.flush() } catch { outputError = error }
                if captured >= limit { shutdown(fd, Int32(SHUT_WR)) }   // the daemon stops too; read its counts
            }
            if outputError != nil { shutdown(fd, Int32(SHUT_WR)) }
        } catch {
            printError("tapbridge: capture stream: \(error)")
        }
        captureSocket = -1
        do { try writer.finish() } catch { if outputError == nil { outputError = error } }
        if let e = outputError as? CaptureError, e.errno != EPIPE { printError("tapbridge: \(e)") }
        let files = writer.filesOpened.count > 1 ? " in \(writer.filesOpened.count) files" : ""
        printError("\(captured) frame\(captured == 1 ? "" : "s") captured\(files), "
                   + (reported ? "\(dropped) dropped" : "drops unknown (the daemon sent no statistics)"))
    }
}
