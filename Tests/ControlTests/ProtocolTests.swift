// ProtocolTests: the v1 wire format without sockets: request decoding (every malformed case
// is an error response), line splitting with a size bound, JSONValue round trips.
import Foundation
import Frames
import Testing
@testable import Control

@Suite struct ControlProtocolTests {
    func decode(_ s: String) -> Result<ControlRequest, ControlResponseFailure> { ControlLine.decodeRequest(Array(s.utf8)) }

    @Test func wellFormedRequest() throws {
        let r = try decode(#"{"v":1,"id":7,"cmd":"stats","args":{"port":"mvt0"}}"#).get()
        #expect(try r.id == 7 && r.cmd == "stats" && r.string("port") == "mvt0")
        #expect(try decode(#"{"v":1,"cmd":"ports"}"#).get().id == 0)
    }

    @Test(arguments: [
        ("{not json", ControlErrorCode.badRequest, 0),
        ("[1,2]", .badRequest, 0),
        (#"{"v":2,"id":3,"cmd":"ports"}"#, .unsupportedVersion, 3),
        (#"{"v":"1","id":3,"cmd":"ports"}"#, .unsupportedVersion, 3),
        (#"{"id":4,"cmd":"ports"}"#, .unsupportedVersion, 4),
        (#"{"v":1,"id":5}"#, .badRequest, 5),
        (#"{"v":1,"id":6,"cmd":"ports","args":[1]}"#, .badRequest, 6),
        (#"{"v":1,"id":"x","cmd":"ports"}"#, .badRequest, 0),
    ])
    func malformedRequestsAreErrors(line: String, code: ControlErrorCode, id: Int) {
        guard case .failure(let f) = decode(line) else { Issue.record("accepted: \(line)"); return }
        #expect(f.code == code && f.id == id, "\(line): \(f)")
        #expect(f.response.ok == false && f.response.v == 1)
    }

    /// Issue 12 #9: a string argument carrying a control character (C0, DEL, C1, a bidi
    /// control) is refused naming the argument; text is shown with them escaped.
    @Test func controlCharactersInArgumentsAreRefused() throws {
        for (json, shown) in [(#""a\nb""#, "U+000A at offset 1"), (#""\u202Eevil""#, "U+202E at offset 0"),
                              (#""x\u007f""#, "U+007F at offset 1"), (#""x\u0085""#, "U+0085 at offset 1"),
                              (#""\u2067y""#, "U+2067 at offset 0")] {
            let r = try decode(#"{"v":1,"id":1,"cmd":"stats","args":{"port":"# + json + "}}").get()
            #expect(throws: ControlError(.invalidArgument, "argument 'port' contains a control character (\(shown)); names and paths may not")) {
                try r.string("port")
            }
        }
        #expect(try decode(#"{"v":1,"id":1,"cmd":"stats","args":{"port":"mvt-ä0"}}"#).get().string("port") == "mvt-ä0")
        #expect(TextSafety.escaped("a\nb\u{1b}[2J\u{202E}c\\") == #"a\nb\x1b[2J\u{202E}c\\"#)
        #expect(TextSafety.escaped("plain päth/x.sock") == "plain päth/x.sock")
    }

    @Test func responsesAreOneLineWithSortedKeys() throws {
        let line = try ControlLine.encode(ControlResponse.success(id: 2, .object(["b": .number(1), "a": .string("x\ny")])))
        let text = String(decoding: line, as: UTF8.self)
        #expect(text == #"{"id":2,"ok":true,"result":{"a":"x\ny","b":1},"v":1}"# + "\n")
        let err = String(decoding: try ControlLine.encode(ControlResponse.failure(id: 3, .noSuchPort, "no port 'x'")), as: UTF8.self)
        #expect(err == #"{"error":{"code":"no-such-port","message":"no port 'x'"},"id":3,"ok":false,"v":1}"# + "\n")
    }

    @Test func lineBufferSplitsAndBounds() {
        var b = LineBuffer(limit: 8)
        b.append(Array("abc\r\nde".utf8))
        #expect(b.next() == .line(Array("abc".utf8)))
        #expect(b.next() == .needMore)
        b.append(Array("f\n".utf8))
        #expect(b.next() == .line(Array("def".utf8)))
        b.append(Array("123456789".utf8))
        #expect(b.next() == .tooLong)
        var c = LineBuffer(limit: 4)
        c.append(Array("12345\n".utf8))
        #expect(c.next() == .tooLong)
    }

    @Test func typedResultsRoundTrip() throws {
        let s = StatsResult(monotonicNs: 12, ports: [PortStats(bridge: "br0", name: "m0", connected: true, rxFrames: 1 << 40, rxBytes: 2,
                                                              txFrames: 3, txBytes: 4, txErrors: 0, rxLargeFrames: 0, txLargeFrames: 0,
                                                              drops: ["filtered": 5])])
        let v = try JSONValue(encoding: s)
        #expect(v["ports"]?.array?.first?["rxFrames"]?.int == 1 << 40)
        #expect(try v.decode(StatsResult.self) == s)
        #expect(s.ports[0].dropsTotal == 5)
    }
}
