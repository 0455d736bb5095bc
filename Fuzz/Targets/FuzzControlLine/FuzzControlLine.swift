// FuzzControlLine: the control socket's request path as ControlServer runs it on bytes from a
// local client: LineBuffer splits what arrives (in reads of a size the input picks) into lines
// bounded by a limit, and ControlLine.decodeRequest turns each line into a request or a
// ready-made error response. Checks: no line ever exceeds the limit, LineBuffer (linear: read
// offset and remembered scan position) answers exactly as the naive splitter below (search
// from the front, remove each line) does, a refused request still encodes as a response, an
// accepted one round-trips through the encoder.
// Input: 1 byte limit selector, 2 bytes read size, then the byte stream.
import Control
import FuzzSupport

/// The reference: what LineBuffer must answer, written the obvious (quadratic) way.
struct NaiveLineSplitter {
    let limit: Int
    var pending: [UInt8] = []
    mutating func next() -> LineBuffer.Next {
        if let nl = pending.firstIndex(of: 0x0A) {
            guard nl <= limit else { return .tooLong }
            var line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            if line.last == 0x0D { line.removeLast() }
            return .line(line)
        }
        return pending.count > limit ? .tooLong : .needMore
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlLine(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    // Mostly the real limit; sometimes a tiny one so the too-long path is reached.
    let selector = input.u8()
    let limit = selector < 0xC0 ? ControlProtocol.maxRequestBytes : Int(selector & 0x3F)
    let readSize = input.int(in: 1...4096)
    let stream = input.rest()

    var lines = LineBuffer(limit: limit)
    var reference = NaiveLineSplitter(limit: limit)
    var at = 0
    reading: while at < stream.count {
        let end = min(stream.count, at + readSize)
        lines.append(stream[at..<end])
        reference.pending += stream[at..<end]
        at = end
        while true {
            let next = lines.next()
            fuzzCheck(next == reference.next(), "LineBuffer and the naive splitter disagree")
            switch next {
            case .needMore: continue reading
            case .tooLong:
                // The server answers request-too-large and closes the connection.
                _ = try? ControlLine.encode(ControlResponse.failure(id: 0, .requestTooLarge, "request longer than \(limit) bytes"))
                break reading
            case .line(let line):
                fuzzCheck(line.count <= limit, "line of \(line.count) bytes past the limit \(limit)")
                switch ControlLine.decodeRequest(line) {
                case .failure(let f):
                    fuzzCheck((try? ControlLine.encode(f.response)) != nil, "error response does not encode")
                case .success(let request):
                    fuzzCheck(request.v == ControlProtocol.version && !request.cmd.isEmpty, "accepted request without v/cmd")
                    if let args = request.args { fuzzCheck(args == .null || args.object != nil, "args not an object") }
                    guard let encoded = try? ControlLine.encode(request) else {
                        fuzzCheck(false, "accepted request does not encode"); return 0
                    }
                    _ = try? request.string("name"); _ = try? request.int("vid")
                    switch ControlLine.decodeRequest(encoded.dropLast()) {
                    case .success(let again):
                        fuzzCheck(again.id == request.id && again.cmd == request.cmd, "request changes through a round trip")
                    case .failure(let f):
                        fuzzCheck(false, "re-encoded request refused: \(f.message)")
                    }
                }
            }
        }
    }
    fuzzCheck(lines.remainder == reference.pending, "LineBuffer's remainder differs from the naive splitter's")
    return 0
}
