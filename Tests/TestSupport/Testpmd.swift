// Testpmd: DPDK's dpdk-testpmd as an independent virtio-user (vhost-user front-end) peer for
// tests: huge pages reserved for it and given back, its run files removed, started with its own
// --file-prefix, stopped through stdin (it prints its port statistics and exits), killed if it
// does not. Needs root and Debian's dpdk-dev.
import Foundation

/// Huge pages for one testpmd run: raises vm.nr_hugepages to `pages` if lower, mounts hugetlbfs
/// at /dev/hugepages if nothing is mounted there; `release()` puts the count back and deletes
/// the run's page files (a killed testpmd leaves them, keeping the pages taken).
public final class HugePages: @unchecked Sendable {
    let previous: Int
    let filePrefix: String
    var released = false

    public init(pages: Int = 512, filePrefix: String) throws {
        self.filePrefix = filePrefix
        let now = Int((try? String(contentsOfFile: "/proc/sys/vm/nr_hugepages", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "0") ?? 0
        previous = now
        if now < pages { try sh("echo \(pages) > /proc/sys/vm/nr_hugepages") }
        let mounted = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8))?
            .split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first == "/dev/hugepages" } ?? false
        if !mounted { try sh("mkdir -p /dev/hugepages && mount -t hugetlbfs none /dev/hugepages") }
    }

    public func release() {
        guard !released else { return }
        released = true
        _ = try? sh("rm -f /dev/hugepages/\(filePrefix)map_* /dev/hugepages/\(filePrefix)* ; rm -rf /var/run/dpdk/\(filePrefix)", check: false)
        _ = try? sh("echo \(previous) > /proc/sys/vm/nr_hugepages", check: false)
    }
    deinit { release() }
}

/// One testpmd process with a net_virtio_user port on `socket`. One at a time in the whole test
/// process: each polls a core at 100% and takes 256 MiB of huge pages, so suites running in
/// parallel would starve each other's testpmd (a start that took over 60 s on a loaded 2-core CI
/// machine) and give the huge-page count back under each other's feet. `init` waits its turn;
/// `stop` (or deinit) gives it up.
public final class Testpmd: @unchecked Sendable {
    private static let turn = DispatchSemaphore(value: 1)
    private var holdsTurn = true
    /// The turn across processes (a sanitizer run beside a plain one, a benchmark beside the
    /// tests): an exclusive flock on this file, released when the descriptor closes. Without it
    /// one process's `release()` put the huge-page count back under another's testpmd.
    static let machineLockPath = "/run/tapbridge-testpmd.lock"
    private var machineLock: Int32 = -1
    public let process = Process()
    let stdin = Pipe()
    let outputPath: String
    public let hugePages: HugePages
    public let filePrefix: String

    public static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/dpdk-testpmd") }

    /// `mode`: txonly, rxonly, icmpecho, io...; `extra`: more testpmd options (after `--`).
    /// `server`: testpmd listens on `socket` (the back-end connects) instead of connecting.
    /// `queues`: queue pairs of the virtio-user port (above 1: multi-queue, with the control
    /// queue virtio-user emulates itself, `cq=1`; pass `--rxq=N --txq=N` in `extra` to use them).
    public init(socket: String, mode: String, frameSize: Int = 64, server: Bool = false, queues: Int = 1, extra: [String] = []) throws {
        filePrefix = "tbt\(UInt32.random(in: 0...UInt32.max))"
        Testpmd.turn.wait()
        machineLock = open(Testpmd.machineLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if machineLock >= 0 { while flock(machineLock, LOCK_EX) != 0 && errno == EINTR {} }
        do { hugePages = try HugePages(filePrefix: filePrefix) } catch {
            if machineLock >= 0 { close(machineLock) }
            Testpmd.turn.signal()
            throw error
        }
        outputPath = "/tmp/\(filePrefix)-testpmd.log"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let out = FileHandle(forWritingAtPath: outputPath)!
        // Line-buffered stdout (a pipe would hold "Press enter to exit" back until exit).
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        process.arguments = ["-oL", "/usr/bin/dpdk-testpmd", "-l", "1,0", "--no-pci", "--file-prefix=\(filePrefix)", "-m", "256", "--single-file-segments",
                             "--vdev", "net_virtio_user0,path=\(socket),queues=\(queues)\(queues > 1 ? ",cq=1" : "")\(server ? ",server=1" : "")",
                             "--", "--forward-mode=\(mode)", "--txpkts=\(frameSize)", "-a"] + extra
        process.standardInput = stdin
        process.standardOutput = out
        process.standardError = out
        do { try process.run() } catch { hugePages.release(); giveUpTurn(); throw error }
    }

    private func giveUpTurn() {
        guard holdsTurn else { return }
        holdsTurn = false
        if machineLock >= 0 { close(machineLock); machineLock = -1 }
        Testpmd.turn.signal()
    }

    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Waits (bounded) until testpmd's output contains `text`.
    @discardableResult
    public func waitFor(_ text: String, timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            usleep(20_000)
        }
        return false
    }

    /// Stops forwarding and exits (Enter on stdin); returns the whole output.
    @discardableResult
    public func stop(timeout: Double = 20) -> String {
        if process.isRunning {
            // Enter ends an interactive-less run; with --stats-period testpmd waits for SIGINT.
            stdin.fileHandleForWriting.write("\n".data(using: .utf8)!)
            try? stdin.fileHandleForWriting.close()
            var deadline = Date().addingTimeInterval(2)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGINT) }
            deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        hugePages.release()
        giveUpTurn()
        let text = output
        try? FileManager.default.removeItem(atPath: outputPath)
        return text
    }

    deinit { _ = stop(timeout: 5) }

    /// The latest value of `name` ("RX-packets") anywhere in the output (periodic statistics
    /// with `--stats-period`).
    public static func lastCounter(_ name: String, in output: String) -> Int? {
        guard let r = output.range(of: "\(name): ", options: .backwards) else { return nil }
        return Int(output[r.upperBound...].prefix { $0.isNumber })
    }

    /// "RX-packets"/"TX-packets" of port 0 from the final forward statistics.
    public static func counter(_ name: String, in output: String) -> Int? {
        guard let block = output.range(of: "Forward statistics for port 0") else { return nil }
        let rest = output[block.upperBound...]
        guard let r = rest.range(of: "\(name): ") else { return nil }
        let digits = rest[r.upperBound...].prefix { $0.isNumber }
        return Int(digits)
    }
}
