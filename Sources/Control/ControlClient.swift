// ControlClient: the CLI's side of the control socket: connect, send one request line, read one
// response line. A streaming command keeps reading raw bytes from `fileDescriptor` afterwards.
import Foundation
import Glibc
import SystemCalls
import SystemPackage
import UnixSocketFiles

public enum ControlClientError: Error, Equatable, CustomStringConvertible {
    /// Nothing listens at the path (no file, or a stale socket).
    case noDaemon(path: String)
    /// The socket file exists but this user may not connect to it.
    case permission(path: String)
    /// The daemon refused or failed the request.
    case daemon(ControlErrorInfo)
    case io(String)

    public var description: String {
        switch self {
        case .noDaemon(let path):
            return "no tapbridge daemon at \(path) (start one with `tapbridge run --config FILE`)"
        case .permission(let path):
            return "permission denied on \(path): the control socket is for root and members of its group (control.group)"
        case .daemon(let info): return info.message
        case .io(let m): return m
        }
    }
}

public final class ControlClient {
    public let path: String
    private let socket: OwnedDescriptor
    private var fd: Int32 { socket.rawValue }
    private var lines = LineBuffer(limit: 256 << 20)
    private var nextID = 1

    /// The socket path a client uses: `--control` if given, else $TAPBRIDGE_CONTROL, else the default.
    public static func socketPath(option: String?) -> String {
        if let option, !option.isEmpty { return option }
        if let env = ProcessInfo.processInfo.environment[ControlProtocol.socketEnvironmentVariable], !env.isEmpty { return env }
        return ControlProtocol.defaultSocketPath
    }

    public init(path: String, timeout: Double = 30) throws {
        self.path = path
        do {
            let socket = try UnixSocketFile.connectStream(to: path)
            // Blocking from here on, with a timeout so a wedged daemon cannot hang the CLI forever.
            try? Syscall.setNonblocking(socket.rawValue, false)
            self.socket = socket
        } catch let e as UnixSocketError {
            switch e.errno {
            case ENOENT, ECONNREFUSED, ENOTDIR: throw ControlClientError.noDaemon(path: path)
            case EACCES, EPERM: throw ControlClientError.permission(path: path)
            default: throw ControlClientError.io("cannot connect to the tapbridge daemon at \(path): \(String(cString: strerror(e.errno)))")
            }
        }
        SocketIO.setTimeout(fd, option: SO_RCVTIMEO, seconds: timeout)
        SocketIO.setTimeout(fd, option: SO_SNDTIMEO, seconds: timeout)
    }

    /// The connected descriptor (for streaming commands, after their first response). Owned by the client.
    public var fileDescriptor: FileDescriptor { FileDescriptor(rawValue: fd) }
    /// Bytes already read past the last response line.
    public var pending: [UInt8] { lines.remainder }

    /// Sends raw bytes (tests use this to send malformed requests).
    public func sendRaw(_ bytes: [UInt8]) throws {
        do { try SocketIO.writeAll(fd, bytes, subject: "the tapbridge daemon at \(path)") } catch {
            throw ControlClientError.io("\(error)")
        }
    }

    /// Reads the next response line.
    public func readResponse() throws -> ControlResponse {
        var buf = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            switch lines.next() {
            case .line(let line):
                do { return try JSONCodec.decoder.decode(ControlResponse.self, from: Data(line)) } catch {
                    throw ControlClientError.io("the daemon at \(path) answered something that is not a v1 response: \(String(decoding: line.prefix(200), as: UTF8.self))")
                }
            case .tooLong: throw ControlClientError.io("response from \(path) too large")
            case .needMore:
                let n: Int
                do { n = try SocketIO.read(fd, into: &buf, subject: "the tapbridge daemon at \(path)") } catch let e as ControlSocketError {
                    if e.errno == EAGAIN { throw ControlClientError.io("the tapbridge daemon at \(path) did not answer in time") }
                    throw ControlClientError.io("\(e)")
                }
                if n == 0 { throw ControlClientError.io("the tapbridge daemon at \(path) closed the connection without an answer") }
                lines.append(buf[..<n])
            }
        }
    }

    /// Sends one request and returns its response (ok or not).
    public func request(_ cmd: String, _ args: [String: JSONValue] = [:]) throws -> ControlResponse {
        let req = ControlRequest(id: nextID, cmd: cmd, args: args.isEmpty ? nil : .object(args))
        nextID += 1
        do { try sendRaw(try ControlLine.encode(req)) } catch {
            // A refused peer (permission, busy) is told why and closed before it writes: the
            // write fails, the explanation is still there to read.
            if let r = try? readResponse() { return r }
            throw error
        }
        return try readResponse()
    }

    /// Sends one request; returns its result or throws `.daemon(error)`.
    public func call(_ cmd: String, _ args: [String: JSONValue] = [:]) throws -> JSONValue {
        let r = try request(cmd, args)
        guard r.ok else { throw ControlClientError.daemon(r.error ?? ControlErrorInfo(code: .failed, message: "failed")) }
        return r.result ?? .null
    }

    /// `call`, decoded into a typed result.
    public func call<T: Decodable>(_ cmd: String, _ args: [String: JSONValue] = [:], as type: T.Type) throws -> T {
        let v = try call(cmd, args)
        do { return try v.decode(T.self) } catch {
            throw ControlClientError.io("unexpected '\(cmd)' result from the daemon: \(error)")
        }
    }
}
