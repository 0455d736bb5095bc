// `tapbridge fdb flush` and `tapbridge fdb monitor`: flush FDB entries by bridge, port, VLAN
// and kind (like `bridge fdb flush`), and follow FDB events as they happen (like
// `bridge monitor fdb`): the daemon streams one JSON line per event after its first reply.
import ArgumentParser
import Control
import Foundation

struct FDBFlush: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flush", abstract: "Flush FDB entries: all, or those of a port, a VLAN, learned only.",
        discussion: """
            Words as `bridge fdb flush` takes them: [BRIDGE] [port P] [vlan V] [dynamic].
            Without `dynamic` static entries go too (those added with `fdb add` are forgotten; the
            configuration's come back at the next port change or reload).
            """)
    @Argument(help: "[BRIDGE] [port P] [vlan V] [dynamic]") var words: [String] = []
    @OptionGroup var control: ControlOptions

    func run() throws {
        var args: [String: JSONValue] = [:]
        var i = 0
        while i < words.count {
            let w = words[i]
            switch w {
            case "port", "dev":
                guard i + 1 < words.count else { throw ValidationError("'\(w)' needs a port name") }
                args["port"] = .string(words[i + 1]); i += 2
            case "vlan":
                guard i + 1 < words.count, let v = Int(words[i + 1]), (0...4094).contains(v) else {
                    throw ValidationError("'vlan' needs a number 0...4094")
                }
                args["vlan"] = .number(Double(v)); i += 2
            case "dynamic":
                args["dynamic"] = .bool(true); i += 1
            default:
                guard i == 0 else { throw ValidationError("unexpected '\(w)' (expected: [BRIDGE] [port P] [vlan V] [dynamic])") }
                args["bridge"] = .string(w); i += 1
            }
        }
        print(try control.call("fdb.flush", args, as: FDBFlushLine.self).done)
    }
}

struct FDBFlushLine: Decodable { var flushed: Int; var done: String }

struct FDBMonitor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor", abstract: "Print FDB events as they happen (learn, move, age, flush, evict, block, unblock, limit).")
    @Argument(help: "Only this bridge.") var bridge: String?
    @Flag(help: "One JSON object per line: {event, bridge, mac, vlan, port, from, reason, ms, lost}.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        // Children of test runners inherit blocked signals: Ctrl-C and SIGTERM must end the monitor.
        var set = sigset_t()
        sigemptyset(&set); sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        let client = try control.connect()
        do { _ = try client.call("fdb.monitor", bridge.map { ["bridge": .string($0)] } ?? [:]) } catch { fail(error) }
        setvbuf(stdout, nil, _IOLBF, 0)
        let fd = client.fileDescriptor.rawValue
        var pending = client.pending
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                emit(line)
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, 1000)
            if r < 0 { if errno == EINTR { continue }; break }
            if r == 0 { continue }
            let n = read(fd, &buf, buf.count)
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; break }
            if n == 0 { break }
            pending += buf[..<n]
        }
    }

    private func emit(_ line: [UInt8]) {
        if json { print(String(decoding: line, as: UTF8.self)); return }
        guard let e = try? JSONDecoder().decode(Event.self, from: Data(line)) else { return }
        var s = "\(e.event) "
        if let m = e.mac { s += "\(m) " }
        if let v = e.vlan, v != 0 { s += "vlan \(v) " }
        s += "port \(e.port)"
        if let f = e.from { s += " from \(f)" }
        s += " bridge \(e.bridge)"
        if let r = e.reason { s += " (\(r))" }
        if let l = e.lost { s += " [\(l) events lost before this one]" }
        print(s)
    }

    struct Event: Decodable {
        var event: String, bridge: String, port: String
        var mac: String?, vlan: Int?, from: String?, reason: String?, lost: UInt64?
    }
}
