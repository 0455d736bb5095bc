// Shell: runs the independent oracle tools (ip, ping, tcpdump, iperf3...) and returns their output.
import Foundation
import SystemCalls

public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { status == 0 }
}

public struct CommandFailed: Error, CustomStringConvertible {
    public var command: String
    public var result: CommandResult
    public var description: String {
        "`\(command)` exited \(result.status)\nstdout: \(result.stdout)\nstderr: \(result.stderr)"
    }
}

/// Runs `argv` (PATH lookup through /usr/bin/env), waits, captures output. Throws if `check`
/// and the exit status is not 0. `timeout` (seconds) kills it with SIGKILL past that.
@discardableResult
public func run(_ argv: [String], check: Bool = true, timeout: Double = 60, input: String? = nil) throws -> CommandResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let inPipe = Pipe()
    p.standardInput = input == nil ? FileHandle.nullDevice : inPipe
    try p.run()
    if let input {
        inPipe.fileHandleForWriting.write(input.data(using: .utf8)!)
        try? inPipe.fileHandleForWriting.close()
    }
    // Read both pipes concurrently so a chatty child cannot fill one and block.
    let outData = Locked(Data()), errData = Locked(Data())
    let group = DispatchGroup()
    let outFD = out.fileHandleForReading.fileDescriptor, errFD = err.fileHandleForReading.fileDescriptor
    group.enter()
    DispatchQueue.global().async { outData.set(readToEnd(outFD)); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData.set(readToEnd(errFD)); group.leave() }
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    group.wait()
    let r = CommandResult(status: p.terminationStatus,
                          stdout: String(decoding: outData.get(), as: UTF8.self),
                          stderr: String(decoding: errData.get(), as: UTF8.self))
    if check && r.status != 0 { throw CommandFailed(command: argv.joined(separator: " "), result: r) }
    return r
}

/// Reads `fd` to its end. Unlike FileHandle.readDataToEndOfFile it survives EINTR (retried by
/// SystemCalls) and a descriptor that became non-blocking (EAGAIN: wait for data), instead of trapping.
func readToEnd(_ fd: Int32) -> Data {
    var data = Data()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let r = buf.withUnsafeMutableBytes { p in Result { () throws(SyscallError) in try Syscall.read(fd, p.baseAddress!, p.count) } }
        switch r {
        case .success(.processed(let n)) where n > 0: data.append(contentsOf: buf[0..<n])
        case .success(.processed): return data   // end of file
        case .success(.wouldBlock): _ = try? Syscall.poll(fd, events: Int16(POLLIN), timeout: 100)
        case .failure: return data
        }
    }
}

/// Runs a bash command line.
@discardableResult
public func sh(_ command: String, check: Bool = true, timeout: Double = 60) throws -> CommandResult {
    try run(["bash", "-c", command], check: check, timeout: timeout)
}

/// Parses JSON text (e.g. `ip -j` output) into Foundation objects.
public func json(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}

/// The built `tapbridge` executable next to the test bundle (swift build puts products and
/// test bundles in the same folder).
public func tapbridgeExecutable() -> String {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("tapbridge").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return "tapbridge"
}

/// A command running in the background for one step of a test (through /usr/bin/env, output
/// discarded): a server, a bounded load. `stop()` kills it with SIGKILL (processes started from
/// the test runner inherit a blocked SIGTERM) and reaps it; `cleanup`'s clean-up does the same
/// if the test fails before that.
public final class BackgroundCommand: @unchecked Sendable {
    public let process = Process()

    public init(_ argv: [String], cleanup: Topology? = nil) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        cleanup?.onCleanup { [process] in if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
