// Protocol: the control socket's wire format, version 1 (docs/control-api.md). One JSON object
// per line, UTF-8, at most `maxRequestBytes` per request line.
//   request  {"v":1,"id":N,"cmd":"stats","args":{...}}
//   response {"v":1,"id":N,"ok":true,"result":{...}}
//            {"v":1,"id":N,"ok":false,"error":{"code":"no-such-port","message":"..."}}
// Portable: no OS calls; the socket side is ControlServer / ControlClient.
import Foundation
import Frames

public enum ControlProtocol {
    public static let version = 1
    /// A longer request line is refused (error `request-too-large`) and the connection closed.
    public static let maxRequestBytes = 64 * 1024
    /// Where `tapbridge run` listens unless told otherwise.
    public static let defaultSocketPath = "/run/tapbridge/control.sock"
    /// Environment variable clients read for the socket path (after `--control`).
    public static let socketEnvironmentVariable = "TAPBRIDGE_CONTROL"
}

public struct ControlRequest: Codable, Equatable, Sendable {
    public var v: Int
    public var id: Int
    public var cmd: String
    public var args: JSONValue?

    public init(id: Int, cmd: String, args: JSONValue? = nil) {
        v = ControlProtocol.version; self.id = id; self.cmd = cmd; self.args = args
    }

    /// Argument `key` as a string, nil if absent.
    public func string(_ key: String) throws -> String? {
        guard let a = args?[key], a != .null else { return nil }
        guard let s = a.string else { throw ControlError(.badRequest, "argument '\(key)' must be a string") }
        if let why = TextSafety.controlProblem(s, what: "argument '\(key)'") { throw ControlError(.invalidArgument, why) }
        return s
    }

    public func requiredString(_ key: String) throws -> String {
        guard let s = try string(key), !s.isEmpty else { throw ControlError(.badRequest, "argument '\(key)' is required") }
        return s
    }

    public func int(_ key: String) throws -> Int? {
        guard let a = args?[key], a != .null else { return nil }
        guard let n = a.int else { throw ControlError(.badRequest, "argument '\(key)' must be an integer") }
        return n
    }
}

/// Error codes a client can act on (the message says the rest, in words).
public struct ControlErrorCode: RawRepresentable, Codable, Equatable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral s: String) { rawValue = s }

    /// Not JSON, not an object, or missing/mistyped fields.
    public static let badRequest: ControlErrorCode = "bad-request"
    /// `v` is not a version this daemon speaks.
    public static let unsupportedVersion: ControlErrorCode = "unsupported-version"
    public static let unknownCommand: ControlErrorCode = "unknown-command"
    public static let requestTooLarge: ControlErrorCode = "request-too-large"
    /// SO_PEERCRED: the peer is neither root nor in the configured group.
    public static let permissionDenied: ControlErrorCode = "permission-denied"
    /// Too many connections open at once.
    public static let busy: ControlErrorCode = "busy"
    /// The control loop did not run the command in time (daemon stopping or stuck).
    public static let timeout: ControlErrorCode = "timeout"
    public static let noSuchPort: ControlErrorCode = "no-such-port"
    public static let noSuchBridge: ControlErrorCode = "no-such-bridge"
    public static let noSuchEntry: ControlErrorCode = "no-such-entry"
    public static let portExists: ControlErrorCode = "port-exists"
    /// The bridge has no handler for this (no learning switch for `fdb`, no filter for `filter`).
    public static let notSupported: ControlErrorCode = "not-supported"
    public static let invalidArgument: ControlErrorCode = "invalid-argument"
    /// A configured bound is reached (e.g. a bridge's `max-static` static FDB entries).
    public static let limitReached: ControlErrorCode = "limit-reached"
    /// A new filter rule set did not compile; the old one stays.
    public static let filterRejected: ControlErrorCode = "filter-rejected"
    public static let failed: ControlErrorCode = "failed"
}

public struct ControlErrorInfo: Codable, Equatable, Sendable {
    public var code: ControlErrorCode
    public var message: String
    public init(code: ControlErrorCode, message: String) { self.code = code; self.message = message }
}

/// A command failure; the server turns it into an `ok:false` response.
public struct ControlError: Error, Equatable, CustomStringConvertible {
    public var info: ControlErrorInfo
    public init(_ code: ControlErrorCode, _ message: String) { info = ControlErrorInfo(code: code, message: message) }
    public var description: String { "\(info.message) (\(info.code.rawValue))" }
}

public struct ControlResponse: Codable, Equatable, Sendable {
    public var v: Int
    /// The request's id (0 when the request could not be read far enough to know it).
    public var id: Int
    public var ok: Bool
    public var result: JSONValue?
    public var error: ControlErrorInfo?

    public static func success(id: Int, _ result: JSONValue) -> ControlResponse {
        ControlResponse(v: ControlProtocol.version, id: id, ok: true, result: result, error: nil)
    }
    public static func failure(id: Int, _ code: ControlErrorCode, _ message: String) -> ControlResponse {
        ControlResponse(v: ControlProtocol.version, id: id, ok: false, result: nil, error: ControlErrorInfo(code: code, message: message))
    }
}

/// Encoding and decoding of single lines.
public enum ControlLine {
    /// `message` as one line, newline included.
    public static func encode<T: Encodable>(_ message: T) throws -> [UInt8] {
        Array(try JSONCodec.encoder.encode(message)) + [0x0A]
    }

    /// Decodes a request line (without its newline). Any problem is a ready-made error response,
    /// carrying the request's id when it could be read.
    public static func decodeRequest(_ line: some Collection<UInt8>) -> Result<ControlRequest, ControlResponseFailure> {
        let data = Data(line)
        guard let value = try? JSONCodec.decoder.decode(JSONValue.self, from: data) else {
            return .failure(.init(id: 0, code: .badRequest, message: "not valid JSON (one JSON object per line)"))
        }
        guard case .object(let o) = value else {
            return .failure(.init(id: 0, code: .badRequest, message: "a request must be a JSON object"))
        }
        let id = o["id"]?.int ?? 0
        guard let v = o["v"] else {
            return .failure(.init(id: id, code: .unsupportedVersion, message: "missing \"v\" (this daemon speaks v\(ControlProtocol.version))"))
        }
        guard v.int == ControlProtocol.version else {
            return .failure(.init(id: id, code: .unsupportedVersion, message: "unsupported protocol version \(Self.text(v)) (this daemon speaks v\(ControlProtocol.version))"))
        }
        guard o["id"] == nil || o["id"]?.int != nil else {
            return .failure(.init(id: 0, code: .badRequest, message: "\"id\" must be an integer"))
        }
        guard let cmd = o["cmd"]?.string, !cmd.isEmpty else {
            return .failure(.init(id: id, code: .badRequest, message: "missing \"cmd\" (a string such as \"stats\")"))
        }
        if let a = o["args"], a != .null, a.object == nil {
            return .failure(.init(id: id, code: .badRequest, message: "\"args\" must be an object"))
        }
        return .success(ControlRequest(id: id, cmd: cmd, args: o["args"]))
    }

    static func text(_ v: JSONValue) -> String {
        (try? String(decoding: JSONCodec.encoder.encode(v), as: UTF8.self)) ?? "?"
    }
}

/// A request that could not be accepted, as the fields of its error response.
public struct ControlResponseFailure: Error, Equatable {
    public var id: Int
    public var code: ControlErrorCode
    public var message: String
    public var response: ControlResponse { .failure(id: id, code, message) }
}
