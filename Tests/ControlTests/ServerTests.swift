// ServerTests: ControlServer over a real Unix socket in a temp directory: malformed input gets
// JSON errors (never a silent close), size and connection bounds, the take-over hook, socket
// file modes, safe stale-socket replacement, and SO_PEERCRED refusal of a non-root peer (the
// built `tapbridge` CLI run as nobody through setpriv).
import Foundation
import Glibc
import SystemPackage
import Testing
import TestSupport
@testable import Control

/// A server on a fresh path with a few commands; stopped and its directory removed at the end.
final class TestServer {
    let dir: String
    let path: String
    let server: ControlServer

    init(group: gid_t? = nil, maxConnections: Int = 16, register: (ControlServer) -> Void = { _ in }) throws {
        dir = FileManager.default.temporaryDirectory.path + "/tbt-ctl-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        path = dir + "/control.sock"
        var c = ControlServer.Configuration(path: path, group: group)
        c.maxConnections = maxConnections
        server = try ControlServer(configuration: c)
        server.register("ports") { _, _ in .result(try JSONValue(encoding: PortsResult(ports: []))) }
        server.register("echo") { req, peer in .result(.object(["args": req.args ?? .null, "uid": .number(Double(peer.uid))])) }
        server.register("fail") { _, _ in throw ControlError(.noSuchPort, "no port 'x'") }
        register(server)
        server.start()
    }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

func withServer<T>(group: gid_t? = nil, maxConnections: Int = 16, register: (ControlServer) -> Void = { _ in },
                   _ body: (TestServer) throws -> T) throws -> T {
    let s = try TestServer(group: group, maxConnections: maxConnections, register: register)
    defer { s.stop() }
    return try body(s)
}

@Suite struct ControlServerTests {
    @Test func requestsAndErrorsOnOneConnection() throws {
        try withServer { s in
            let c = try ControlClient(path: s.path)
            let echo = try c.request("echo", ["x": .number(1)])
            #expect(echo.ok && echo.id == 1 && echo.result?["args"]?["x"]?.int == 1 && echo.result?["uid"]?.int == 0)
            let f = try c.request("fail")
            #expect(!f.ok && f.error?.code == .noSuchPort && f.id == 2)
            let u = try c.request("nope")
            #expect(u.error?.code == .unknownCommand && u.error?.message.contains("known: echo, fail, ports") == true, "\(u)")
            // Malformed lines get an error line each and the connection stays usable.
            for (line, code) in [("{oops", ControlErrorCode.badRequest), (#"{"v":9,"id":4,"cmd":"echo"}"#, .unsupportedVersion),
                                 (#"{"v":1,"id":5}"#, .badRequest), ("42", .badRequest)] {
                try c.sendRaw(Array((line + "\n").utf8))
                let r = try c.readResponse()
                #expect(!r.ok && r.error?.code == code, "\(line) -> \(r)")
            }
            // Two requests in one write: two responses, in order.
            try c.sendRaw(Array((#"{"v":1,"id":10,"cmd":"echo"}"# + "\n" + #"{"v":1,"id":11,"cmd":"echo"}"# + "\n").utf8))
            #expect(try c.readResponse().id == 10)
            #expect(try c.readResponse().id == 11)
            #expect(try c.request("echo").ok)
        }
    }

    @Test func oversizeRequestGetsAnErrorThenClose() throws {
        try withServer { s in
            let c = try ControlClient(path: s.path)
            try c.sendRaw([UInt8](repeating: 0x61, count: ControlProtocol.maxRequestBytes + 100))
            let r = try c.readResponse()
            #expect(r.error?.code == .requestTooLarge, "\(r)")
            #expect(throws: ControlClientError.self) { _ = try c.readResponse() }   // closed
            // A request of exactly the limit is still read.
            let pad = String(repeating: " ", count: ControlProtocol.maxRequestBytes - 40)
            let c2 = try ControlClient(path: s.path)
            let line = #"{"v":1,"id":1,"cmd":"echo"}"# + pad
            try c2.sendRaw(Array((line + "\n").utf8))
            #expect(try c2.readResponse().ok)
        }
    }

    @Test func connectionsAreBounded() throws {
        try withServer(maxConnections: 2) { s in
            let a = try ControlClient(path: s.path), b = try ControlClient(path: s.path)
            #expect(try a.request("echo").ok && b.request("echo").ok)
            let c = try ControlClient(path: s.path)
            let r = try c.readResponse()
            #expect(r.error?.code == .busy, "\(r)")
            _ = a   // a closes: room for another
        }
    }

    @Test func takeOverHandsTheConnectionToTheCommand() throws {
        let ended = DispatchSemaphore(value: 0)
        let seen = Locked<[UInt8]>([])
        try withServer(register: { server in
            server.register("stream") { req, _ in
                let n = try req.int("count") ?? 3
                return .takeOver(first: .object(["format": .string("raw")])) { conn in
                    seen.set(conn.pending)
                    for i in 0..<n {
                        let bytes = Array("chunk \(i)\n".utf8)
                        _ = try? conn.fileDescriptor.writeAll(bytes)
                    }
                    ended.signal()
                }
            }
        }) { s in
            let c = try ControlClient(path: s.path)
            // The request plus bytes after it in one write: the command gets those bytes.
            try c.sendRaw(Array((#"{"v":1,"id":1,"cmd":"stream","args":{"count":4}}"# + "\nEXTRA").utf8))
            let first = try c.readResponse()
            #expect(first.ok && first.result?["format"]?.string == "raw")
            var raw = c.pending
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = try buf.withUnsafeMutableBytes { try c.fileDescriptor.read(into: $0) }
                if n == 0 { break }
                raw += buf[..<n]
            }
            #expect(String(decoding: raw, as: UTF8.self) == "chunk 0\nchunk 1\nchunk 2\nchunk 3\n")
            #expect(ended.wait(timeout: .now() + 30) == .success)
            #expect(seen.get() == Array("EXTRA".utf8) || seen.get().isEmpty)   // EXTRA may arrive after the line was read
            // The server closed it and counts it no more.
            let deadline = Date().addingTimeInterval(30)
            while s.server.connectionCount > 0 && Date() < deadline { usleep(10_000) }
            #expect(s.server.connectionCount == 0)
        }
    }

    @Test func socketFileModes() throws {
        try withServer { s in
            var st = stat()
            #expect(lstat(s.path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK && st.st_mode & 0o777 == 0o600)
        }
        try withServer(group: 65534) { s in
            var st = stat()
            #expect(lstat(s.path, &st) == 0 && st.st_mode & 0o777 == 0o660 && st.st_gid == 65534)
        }
    }

    @Test func staleSocketReplacedButNeverALiveOneASymlinkOrAFile() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/tbt-ctl-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/control.sock"
        // Stale: bound, then closed without unlinking.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_un(); sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0)
        close(fd)
        let first = try ControlServer(configuration: .init(path: path))
        first.start()
        defer { first.stop() }
        #expect(try ControlClient(path: path).request("x").error?.code == .unknownCommand)
        // Live: a second server refuses and leaves the first one working.
        #expect(throws: ControlSocketError.self) { _ = try ControlServer(configuration: .init(path: path)) }
        #expect(try ControlClient(path: path).request("x").error?.code == .unknownCommand)
        // A symlink or a regular file in the way: refused, left untouched.
        let target = dir + "/target"
        try "keep".write(toFile: target, atomically: true, encoding: .utf8)
        let link = dir + "/link.sock"
        #expect(symlink(target, link) == 0)
        #expect(throws: ControlSocketError.self) { _ = try ControlServer(configuration: .init(path: link)) }
        #expect(throws: ControlSocketError.self) { _ = try ControlServer(configuration: .init(path: target)) }
        var st = stat()
        #expect(lstat(link, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
    }

    @Test func noDaemonIsReportedAsSuch() throws {
        let path = FileManager.default.temporaryDirectory.path + "/tbt-ctl-none-\(UInt32.random(in: 0...UInt32.max)).sock"
        #expect(throws: ControlClientError.noDaemon(path: path)) { _ = try ControlClient(path: path) }
    }

    /// SO_PEERCRED: the CLI run as nobody (uid/gid 65534, no supplementary groups) through a
    /// socket file opened to everyone is refused with a JSON error; with the control group set
    /// to its gid it is admitted.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs setpriv (util-linux)"))
    func nonRootPeerIsRefusedUnlessInTheGroup() throws {
        let asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", tapbridgeExecutable(), "ports", "--json", "--control"]
        try withServer { s in
            // The 0600 file alone keeps nobody out...
            let denied = try run(asNobody + [s.path], check: false)
            #expect(denied.status == 1 && denied.stderr.contains("permission denied on \(s.path)"), "\(denied)")
            chmod(s.path, 0o666)   // ...and past the file permission the peer check alone must refuse
            let r = try run(asNobody + [s.path], check: false)
            #expect(r.status == 1, "\(r)")
            #expect(r.stderr.contains("permission denied: uid 65534 is not root"), "\(r.stderr)")
            // Root is still served.
            #expect(try ControlClient(path: s.path).request("ports").ok)
        }
        try withServer(group: 65534) { s in
            let r = try run(asNobody + [s.path], check: false)
            #expect(r.status == 0 && r.stdout.contains(#"{"ports":[]}"#), "\(r)")
        }
        try withServer(group: 4242) { s in
            chmod(s.path, 0o666)
            let r = try run(asNobody + [s.path], check: false)
            #expect(r.status == 1 && r.stderr.contains("not in the control group (gid 4242)"), "\(r)")
        }
    }
}
